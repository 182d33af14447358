"""Fixtures several test files share, and the suite's disk budget."""

import os
import shutil
import tempfile

import chainer
import pytest

#: Disk the suite needs, in GB: its peak (5.0 GB measured, in
#: tests/test_train_multi.py, which holds several finished training runs
#: at once) with some room; docs/install.md says the same.
DISK_NEEDED_GB = 6


def pytest_report_header(config):
    """The free disk where the tests write, in the header of every run:
    a suite that runs out of it fails in whatever test comes next."""
    folder = config.option.basetemp or tempfile.gettempdir()
    while not os.path.exists(folder):
        folder = os.path.dirname(os.path.abspath(folder))
    free = shutil.disk_usage(folder).free / 1e9
    line = 'disk: {:.1f} GB free in {}; the tests need about {} GB'.format(
        free, folder, DISK_NEEDED_GB)
    if free < DISK_NEEDED_GB:
        line += (' (free some, or put their files elsewhere with '
                 '--basetemp DIR)')
    return line


@pytest.fixture(scope='module', autouse=True)
def _remove_module_folders(request, tmp_path_factory):
    """Remove what a test module made under the session's temporary folder
    once its tests are done, unless one of them failed.

    The training and export tests write whole PSPNets (a snapshot is about
    400 MB), and pytest keeps the folders of ``tmp_path_factory`` until the
    session ends: the suite would need over 20 GB of disk. Function-level
    ``tmp_path`` folders of passed tests go at once
    (``tmp_path_retention_policy = failed`` in pytest.ini); this takes the
    module-level ones, so the suite needs the disk of its largest module.
    """
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed != failed:
        return
    for path in set(base.iterdir()) - before:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@pytest.fixture
def chainer_dataset_root(tmp_path_factory, monkeypatch):
    """Chainer's dataset root (where the label checks are cached) in one
    temporary folder for the whole test session, for this process and the
    scripts it starts (``CHAINER_DATASET_ROOT``)."""
    root = str(tmp_path_factory.getbasetemp() / 'chainer_dataset')
    monkeypatch.setenv('CHAINER_DATASET_ROOT', root)
    old = chainer.dataset.get_dataset_root()
    chainer.dataset.set_dataset_root(root)
    yield root
    chainer.dataset.set_dataset_root(old)
