"""Packaging: ``pip install .`` and ``pip install -e .`` of a copy of the
checkout into fresh virtual environments, ``import pspnet`` from another
folder; the pins of pyproject.toml against the requirements files;
``--version`` on every script.

The fresh environments get the heavy dependencies (Chainer built from
source, NumPy, OpenCV, ...) from this environment through a ``.pth`` file,
so that pip finds them installed and the install needs no network
(``--no-index``); pspnet itself is built from pyproject.toml and installed
into the fresh environment's own site-packages.
"""

import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib

import pytest

import pspnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: What the copy of the checkout leaves out (environments, build output).
IGNORED = shutil.ignore_patterns('.git', '.venv', '.gpuenv', '.whl', 'build',
                                 '*.egg-info', '__pycache__', '.pytest_cache',
                                 'result')

#: Run in the fresh environment, from another folder: what got installed.
PROBE = r'''
import importlib, importlib.metadata, json, os, pkgutil
import pspnet
root = os.path.dirname(pspnet.__file__)
modules = sorted(m.name for m in pkgutil.walk_packages([root], 'pspnet.'))
for name in modules:
    importlib.import_module(name)
from pspnet.caffe import schema
schema.messages('raw')  # parses the installed caffe.proto
dist = importlib.metadata.distribution('pspnet')
print(json.dumps({
    'file': pspnet.__file__,
    'version': pspnet.__version__,
    'dist_version': dist.version,
    'requires': dist.requires,
    'modules': modules,
    'proto': os.path.isfile(os.path.join(root, 'caffe', 'caffe.proto')),
}))
'''


def checkout_modules():
    """Module names of the checkout's pspnet package."""
    names = []
    for path in glob.glob(os.path.join(ROOT, 'pspnet', '**', '*.py'),
                          recursive=True):
        rel = os.path.relpath(path, ROOT)[:-len('.py')].split(os.sep)
        if rel[-1] == '__init__':
            rel = rel[:-1]
        if rel != ['pspnet']:
            names.append('.'.join(rel))
    return sorted(names)


def fresh_venv(path):
    """A new virtual environment that sees this one's packages (through a
    .pth file processed as a site directory, so that its own .pth files
    work too) but has its own, empty site-packages first."""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(path)],
                   check=True, timeout=120)
    python = str(path / 'bin' / 'python')
    site = subprocess.run(
        [python, '-c', 'import sysconfig; print(sysconfig.get_paths()'
         '["purelib"])'], check=True, capture_output=True, text=True
    ).stdout.strip()
    here = sorted({sysconfig.get_paths()['purelib'],
                   sysconfig.get_paths()['platlib']})
    with open(os.path.join(site, 'project-venv.pth'), 'w') as f:
        f.write('import site; {}\n'.format('; '.join(
            'site.addsitedir({!r})'.format(p) for p in here)))
    return python, site


def clean_env():
    env = dict(os.environ)
    for name in ('PYTHONPATH', 'PYTHONHOME', 'PIP_REQUIRE_VIRTUALENV'):
        env.pop(name, None)
    return env


def install(tmp_path, editable=False, source=None):
    """Copy the checkout, pip install it into a fresh environment, probe
    the installation from another folder; returns (probe, site, source)."""
    if source is None:
        source = tmp_path / 'checkout'
        shutil.copytree(ROOT, str(source), ignore=IGNORED)
    python, site = fresh_venv(tmp_path / 'venv')
    result = subprocess.run(
        [python, '-m', 'pip', 'install', '--no-build-isolation', '--no-index',
         '--quiet']
        + (['-e'] if editable else []) + [str(source)],
        cwd=str(tmp_path), env=clean_env(), capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    probe = subprocess.run([python, '-c', PROBE], cwd=str(elsewhere),
                           env=clean_env(), capture_output=True, text=True,
                           timeout=300)
    assert probe.returncode == 0, probe.stderr
    return json.loads(probe.stdout.strip().splitlines()[-1]), site, source


def requirement_lines(name):
    """Requirement lines of a requirements file, without comments and
    options."""
    with open(os.path.join(ROOT, name)) as f:
        lines = [line.split('#')[0].strip() for line in f]
    return [line for line in lines if line and not line.startswith('-')]


def normalized(requirements):
    """Requirements as comparable values (name, specifiers, marker)."""
    from packaging.requirements import Requirement
    parsed = [Requirement(r) for r in requirements]
    return sorted((r.name.lower(), sorted(str(s) for s in r.specifier),
                   str(r.marker)) for r in parsed)


def pyproject():
    with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
        return tomllib.load(f)


def test_pip_install_into_a_fresh_environment(tmp_path):
    probe, site, _ = install(tmp_path)
    assert os.path.dirname(os.path.dirname(probe['file'])) == site
    assert probe['version'] == probe['dist_version'] == pspnet.__version__
    assert probe['proto']
    assert probe['modules'] == checkout_modules()
    # The installed distribution asks for the pins of pyproject.toml.
    runtime = [r for r in probe['requires'] if 'extra ==' not in r]
    assert normalized(runtime) == normalized(
        pyproject()['project']['dependencies'])


def test_pip_install_editable(tmp_path):
    probe, site, source = install(tmp_path, editable=True)
    assert probe['file'] == str(source / 'pspnet' / '__init__.py')
    assert probe['version'] == probe['dist_version'] == pspnet.__version__
    assert probe['proto']
    assert probe['modules'] == checkout_modules()


def test_install_check_sees_a_broken_pyproject(tmp_path):
    # Without the package data, the same check fails: caffe.proto is not
    # installed, and pspnet.caffe cannot be imported.
    source = tmp_path / 'checkout'
    shutil.copytree(ROOT, str(source), ignore=IGNORED)
    text = (source / 'pyproject.toml').read_text()
    broken = re.sub(r'\[tool\.setuptools\.package-data\]\n[^\n]*\n', '',
                    text)
    assert broken != text
    (source / 'pyproject.toml').write_text(broken)
    with pytest.raises(AssertionError, match='caffe.proto'):
        install(tmp_path, source=source)


def test_pins_agree_with_the_requirements_files():
    project = pyproject()['project']
    build_and_test = ('wheel', 'pytest')
    runtime = [r for r in requirement_lines('requirements.txt')
               if not r.startswith(build_and_test)]
    assert normalized(project['dependencies']) == normalized(runtime)
    extras = project['optional-dependencies']
    assert normalized(extras['test']) == normalized(
        [r for r in requirement_lines('requirements.txt')
         if r.startswith('pytest')])
    assert normalized(extras['gpu']) == normalized(
        requirement_lines('requirements-gpu.txt'))
    assert normalized(extras['gpu-cudnn']) == normalized(
        requirement_lines('requirements-gpu-cudnn.txt'))
    # requirements-extras.txt is every optional extra but the GPU ones.
    assert normalized(extras['onnx'] + extras['cityscapes']) == normalized(
        requirement_lines('requirements-extras.txt'))
    # The version has one source: pspnet/__init__.py.
    assert 'version' in project['dynamic']
    assert pyproject()['tool']['setuptools']['dynamic']['version'] == {
        'attr': 'pspnet.__version__'}
    assert re.fullmatch(r'\d+\.\d+\.\d+', pspnet.__version__)


def scripts():
    """The scripts at the repository root (each has a main(argv))."""
    paths = sorted(glob.glob(os.path.join(ROOT, '*.py')))
    assert len(paths) >= 5
    return paths


@pytest.mark.parametrize('path', scripts(), ids=os.path.basename)
def test_every_script_has_version(path, capsys, monkeypatch):
    import chainer
    name = os.path.basename(path)
    monkeypatch.setattr(sys, 'argv', [path])
    spec = importlib.util.spec_from_file_location(name[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.main(['--version'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out == '{} (pspnet {}, Chainer {})\n'.format(
        name, pspnet.__version__, chainer.__version__)
