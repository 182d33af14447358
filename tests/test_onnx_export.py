"""The ONNX export (pspnet.onnx_export, export_onnx.py) run with ONNX
Runtime against the project's Chainer network, on random sensitive
weights of both depths at random odd input sizes.

Needs the optional packages of requirements-extras.txt (onnx, onnxruntime);
without them these tests skip, except those of the error for their
absence.
"""

import errno
import os
import subprocess
import sys
import types

import chainer
import numpy as np
import pytest

import export_onnx
from pspnet import atomic
from pspnet import memory
from pspnet import models
from pspnet import onnx_export
from pspnet import prediction
from pspnet import PSPNetResNet101
from pspnet import PSPNetResNet50
from pspnet.errors import UserError
from tests.helpers.random_weights import sensitive_model
from tests.helpers.random_weights import smooth_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL = 'needs {}: pip install -r requirements-extras.txt'
N_CLASS = 7


def _have(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _onnx_usable():
    try:
        onnx_export.require_onnx()
    except Exception:
        return False
    return True


needs_onnx = pytest.mark.skipif(
    not _onnx_usable(), reason=INSTALL.format('onnx below 1.19'))
needs_runtime = pytest.mark.skipif(
    not (_onnx_usable() and _have('onnxruntime')),
    reason=INSTALL.format('onnx below 1.19 and onnxruntime'))


def random_size(rng):
    """(H, W) of at least 48, odd or even, often not square."""
    return tuple(int(s) for s in rng.randint(48, 120, size=2))


class Exported(object):
    """A sensitive random model, its graph and a runtime session."""

    def __init__(self, cls, seed):
        rng = np.random.RandomState(seed)
        self.size = random_size(rng)
        self.model = sensitive_model(cls, N_CLASS, self.size, rng)
        self.graph = onnx_export.to_onnx(self.model)
        self.data = self.graph.SerializeToString()
        self.runtime = onnx_export.OnnxRuntimeSegmenter(self.data)
        self.rng = rng

    def images(self, n):
        return np.stack([smooth_image(self.rng, self.size)
                         for _ in range(n)])


_EXPORTS = {}


def get_export(depth):
    if not (_onnx_usable() and _have('onnxruntime')):
        pytest.skip(INSTALL.format('onnx below 1.19 and onnxruntime'))
    if depth not in _EXPORTS:
        cls = {50: PSPNetResNet50, 101: PSPNetResNet101}[depth]
        _EXPORTS[depth] = Exported(cls, seed=depth)
    return _EXPORTS[depth]


@pytest.fixture(scope='module', params=[50, 101])
def exported(request):
    return get_export(request.param)


@pytest.fixture(scope='module')
def r50():
    yield get_export(50)
    _EXPORTS.clear()


@pytest.fixture(scope='module')
def misaligned(r50):
    """The R50 graph with onnx_chainer's own resize converter."""
    return onnx_export.to_onnx(r50.model, converters={})


def chainer_logits(model, x):
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        return model.forward(x - model.mean).array


def relative_error(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def agreement(got, want):
    return float((got.argmax(axis=1) == want.argmax(axis=1)).mean())


def test_logits_match_chainer(exported):
    # Batches of 1 and 3 through the graph's dynamic batch axis.
    for n in (1, 3):
        x = exported.images(n)
        got = exported.runtime.logits(x)
        want = chainer_logits(exported.model, x)
        assert got.shape == want.shape == (n, N_CLASS) + exported.size
        assert relative_error(got, want) <= 1e-4
        assert agreement(got, want) >= 0.999
        # The weights make labels change often: the check is sensitive.
        assert len(np.unique(want.argmax(axis=1))) == N_CLASS


def test_graph_interface(exported):
    import onnx
    graph = exported.graph
    onnx.checker.check_model(graph)
    assert graph.ir_version == onnx_export.IR_VERSION
    (inp,), (out,) = graph.graph.input, graph.graph.output

    def dims(value):
        return [d.dim_param or d.dim_value
                for d in value.type.tensor_type.shape.dim]

    assert inp.name == 'image' and out.name == 'logits'
    assert dims(inp) == ['batch', 3] + list(exported.size)
    assert dims(out) == ['batch', N_CLASS] + list(exported.size)
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # The weights are initializers only, not inputs that could be fed.
    assert len(graph.graph.initializer) > 100
    assert graph.opset_import[0].version == onnx_export.OPSET_VERSION
    meta = onnx_export.read_metadata(exported.data)
    assert meta['n_class'] == str(N_CLASS)
    assert meta['input_size'] == '{},{}'.format(*exported.size)
    assert meta['model'] == exported.model.__class__.__name__
    np.testing.assert_array_equal(exported.runtime.mean, exported.model.mean)
    assert exported.runtime.input_size == exported.size
    assert exported.runtime.n_class == N_CLASS


def test_every_resize_aligns_corners(exported):
    resizes = [node for node in exported.graph.graph.node
               if node.op_type == 'Resize']
    # Four pyramid branches and the logits.
    assert len(resizes) == 5
    for node in resizes:
        attributes = {a.name: a.s.decode() for a in node.attribute}
        assert attributes == {'mode': 'linear',
                              'coordinate_transformation_mode':
                              'align_corners'}


def test_onnx_chainers_own_resize_would_fail_the_tolerance(r50, misaligned):
    # The trap the custom converter avoids: onnx_chainer's Resize samples
    # half a pixel off (and rounds sizes through scales), far outside the
    # tolerance of test_logits_match_chainer.
    x = r50.images(1)
    got = onnx_export.OnnxRuntimeSegmenter(misaligned).logits(x)
    want = chainer_logits(r50.model, x)
    assert got.shape != want.shape or relative_error(got, want) > 1e-2
    assert {a.s.decode() for node in misaligned.graph.node
            if node.op_type == 'Resize' for a in node.attribute
            if a.name == 'coordinate_transformation_mode'} <= {'half_pixel'}


def close_scores(got, want):
    """Softmax scores of the same windows: the sensitive weights' near
    ties turn logit differences of 1e-6 into score differences of 1e-3 on
    a few pixels; a wrong window would be off everywhere."""
    difference = np.abs(got - want)
    assert difference.mean() < 1e-5 and difference.max() < 1e-2


def test_segmenter_predicts_as_the_project(r50):
    # Windows (a long side beyond the input size), the canvas (shrunk or
    # not), flips and scales: the same scores as the link's predict. (The
    # depth does not matter here; both are compared in
    # test_logits_match_chainer.)
    H, W = r50.size
    rng = np.random.RandomState(0)
    model, runtime = r50.model, r50.runtime
    cases = [((H + H // 2, W + 7), None, True),
             ((H + H // 2, W + 7), (0.5, 1.0), True),
             ((rng.randint(5, H), rng.randint(5, 2 * W)), None, True),
             ((rng.randint(5, H), rng.randint(5, W)), None, False)]
    try:
        for shape, scales, flip in cases:
            model.scales = runtime.scales = scales
            model.flip = runtime.flip = flip
            img = smooth_image(rng, shape)
            calls = []
            want = model.predict_scores(img)
            got = runtime.predict_scores(
                img, lambda done, total: calls.append(total))
            assert got.shape == want.shape == (N_CLASS,) + shape
            assert len(calls) == calls[0] == prediction.network_calls(
                shape, r50.size, scales)
            close_scores(got, want)
            labels = runtime.predict([img])[0]
            assert labels.dtype == np.int32 and labels.shape == shape
            assert (labels == want.argmax(axis=0)).mean() >= 0.999
    finally:
        model.scales = runtime.scales = None
        model.flip = runtime.flip = True


def test_export_check_refuses_a_wrong_graph(r50, misaligned, tmp_path,
                                            monkeypatch):
    monkeypatch.setattr(onnx_export, 'to_onnx',
                        lambda model, converters=None: misaligned)
    with pytest.raises(UserError, match='does not compute.*nothing was '
                       'written'):
        onnx_export.export(r50.model, str(tmp_path / 'bad.onnx'), check=True)
    assert os.listdir(str(tmp_path)) == []


def test_full_disk_leaves_nothing(r50, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, 'to_onnx',
                        lambda model, converters=None: r50.graph)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, 'fsync', full)
    with pytest.raises(UserError,
                       match='nothing was written; free some space'):
        onnx_export.export(r50.model, str(tmp_path / 'out.onnx'))
    assert os.listdir(str(tmp_path)) == []


# export_onnx.py


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    model = sensitive_model(PSPNetResNet50, 19, 64, np.random.RandomState(5))
    path = str(tmp_path_factory.mktemp('weights') / 'pspnet19.npz')
    chainer.serializers.save_npz(path, model, compression=False)
    return path


@needs_runtime
def test_script_end_to_end(weights, tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'export_onnx.py'),
         '--model', 'pspnet_resnet50', '--pretrained-model', weights,
         '--input-size', '65', '--check', 'out.onnx'],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert 'wrote out.onnx: PSPNetResNet50, 19 classes (cityscapes)' in \
        result.stdout
    assert 'labels equal on' in result.stdout
    assert os.listdir(str(tmp_path)) == ['out.onnx']
    runtime = onnx_export.OnnxRuntimeSegmenter(str(tmp_path / 'out.onnx'))
    assert runtime.input_size == (65, 65) and runtime.n_class == 19
    meta = onnx_export.read_metadata(str(tmp_path / 'out.onnx'))
    assert meta['dataset'] == 'cityscapes'
    # The written graph computes what the weights do.
    model = PSPNetResNet50(pretrained_model=weights, input_size=65)
    x = smooth_image(np.random.RandomState(0), (65, 65))[None]
    got, want = runtime.logits(x), chainer_logits(model, x)
    assert relative_error(got, want) <= 1e-4


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_onnx.main(argv)
    err = capsys.readouterr().err
    return exit_info.value.code, err


@needs_onnx
@pytest.mark.parametrize('case', [
    'missing weights', 'corrupt weights', 'small size', 'bad size',
    'folder as output', 'missing folder', 'parent is a file',
    'wrong dataset', 'no weights flag'])
def test_user_errors_in_one_line(case, weights, tmp_path, capsys):
    (tmp_path / 'corrupt.npz').write_bytes(b'not an npz')
    (tmp_path / 'folder.onnx').mkdir()
    (tmp_path / 'file').write_text('x')
    args = {'--model': 'pspnet_resnet50', '--pretrained-model': weights,
            '--input-size': '64'}
    out = str(tmp_path / 'out.onnx')
    expected = {
        'missing weights': 'does not exist',
        'corrupt weights': 'corrupt.npz',
        'small size': 'too small',
        'bad size': 'expected an integer',
        'folder as output': 'is a folder; give the path of the .onnx file',
        'missing folder': 'does not exist; create it',
        'parent is a file': 'does not exist; create it',
        'wrong dataset': 'class',
        'no weights flag': '--pretrained-model',
    }[case]
    if case == 'missing weights':
        args['--pretrained-model'] = str(tmp_path / 'missing.npz')
    elif case == 'corrupt weights':
        args['--pretrained-model'] = str(tmp_path / 'corrupt.npz')
    elif case == 'small size':
        args['--input-size'] = '40'
    elif case == 'bad size':
        args['--input-size'] = '6x4'
    elif case == 'folder as output':
        out = str(tmp_path / 'folder.onnx')
    elif case == 'missing folder':
        out = str(tmp_path / 'nowhere' / 'out.onnx')
    elif case == 'parent is a file':
        out = str(tmp_path / 'file' / 'out.onnx')
    elif case == 'wrong dataset':
        args['--dataset'] = 'ade20k'
    elif case == 'no weights flag':
        del args['--pretrained-model']
    argv = [item for pair in args.items() for item in pair] + [out]
    before = sorted(os.listdir(str(tmp_path)))
    code, err = run_main(argv, capsys)
    assert code == 2
    assert err.startswith('error: ') and err.count('\n') == 1, err
    assert expected in err, err
    assert sorted(os.listdir(str(tmp_path))) == before


def test_missing_onnx_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnx', None)  # import onnx fails
    code, err = run_main(['--pretrained-model', 'weights.npz',
                          str(tmp_path / 'out.onnx')], capsys)
    assert code == 2
    assert err == ('error: onnx is not installed; pip install -r '
                   'requirements-extras.txt\n')
    assert os.listdir(str(tmp_path)) == []


def test_onnx_without_mapping_in_one_line(tmp_path, capsys, monkeypatch):
    # onnx 1.19 and later: onnx_chainer's import of onnx.mapping fails.
    import types
    fake = types.ModuleType('onnx')
    fake.__version__ = '1.19.0'
    fake.__path__ = []
    monkeypatch.setitem(sys.modules, 'onnx', fake)
    monkeypatch.setitem(sys.modules, 'onnx.mapping', None)
    code, err = run_main(['--pretrained-model', 'cityscapes',
                          str(tmp_path / 'out.onnx')], capsys)
    assert code == 2 and err.count('\n') == 1
    assert 'onnx 1.19.0 has no onnx.mapping' in err
    assert 'requirements-extras.txt' in err


# Memory


def _no_model(*args, **kwargs):
    raise AssertionError('the model was loaded before the input size was '
                         'checked')


def _quantizer_usable():
    try:
        import onnxruntime.quantization  # NOQA
        return True
    except Exception:
        return False


@needs_onnx
@pytest.mark.parametrize('depth', [50, 101])
@pytest.mark.parametrize('precision', ['float32', 'int8'])
def test_input_size_that_cannot_fit_refused_before_model_load(
        depth, precision, tmp_path, capsys, monkeypatch):
    # An INT8 export's calibration holds more than the trace: its own
    # estimate, which is larger.
    if precision == 'int8' and not _quantizer_usable():
        pytest.skip('needs ONNX Runtime\'s quantizer: .venv/bin/pip install '
                    '--no-build-isolation -r requirements-extras.txt')
    path = 'export-int8' if precision == 'int8' else 'export'
    assert memory.estimate_bytes(depth, 473, path=path) >= \
        memory.estimate_bytes(depth, 473, path='export')
    rng = np.random.RandomState(depth)
    monkeypatch.setattr(memory, '_resident_bytes', lambda: 0)
    model = 'pspnet_resnet{}'.format(depth)
    for limit in rng.uniform(2e9, 1e11, 3):
        monkeypatch.setattr(memory, 'available_bytes', lambda: limit)
        largest = memory.largest_input_size(
            depth, limit * memory.USABLE_FRACTION, path=path)
        assert memory.estimate_bytes(depth, largest, path=path) <= \
            limit * memory.USABLE_FRACTION
        for size in (largest + 1, largest + int(rng.randint(2, 5000))):
            monkeypatch.setattr(models, 'build_model', _no_model)
            code, err = run_main(['--model', model, '--pretrained-model',
                                  'cityscapes', '--input-size', str(size),
                                  '--precision', precision,
                                  str(tmp_path / 'out.onnx')], capsys)
            assert code == 2 and err.count('\n') == 1, err
            assert err.startswith('error: --input-size {} needs about '
                                  .format(size))
            assert '({})'.format(memory.PATH_NAMES[path]) in err
            assert 'use at most --input-size {} '.format(largest) in err
        # The largest passes the check (to the model load).
        loaded = []

        def stop(*args, **kwargs):
            loaded.append(args)
            raise UserError('stopped after the check')

        monkeypatch.setattr(models, 'build_model', stop)
        code, err = run_main(['--model', model, '--pretrained-model',
                              'cityscapes', '--input-size', str(largest),
                              '--precision', precision,
                              str(tmp_path / 'out.onnx')], capsys)
        assert loaded and 'stopped after the check' in err
    assert os.listdir(str(tmp_path)) == []


@needs_onnx
def test_default_input_size_that_cannot_fit_refused(weights, tmp_path,
                                                    capsys, monkeypatch):
    # No --input-size: the weights' dataset's (cityscapes: 713) is checked
    # once the model is built, before the export.
    monkeypatch.setattr(memory, 'available_bytes', lambda: 1e9)
    monkeypatch.setattr(memory, '_resident_bytes', lambda: 0)
    monkeypatch.setattr(onnx_export, 'to_onnx', _no_model)
    code, err = run_main(['--model', 'pspnet_resnet50', '--pretrained-model',
                          weights, str(tmp_path / 'out.onnx')], capsys)
    assert code == 2 and err.count('\n') == 1, err
    assert err.startswith('error: --input-size 713 needs about ')
    assert os.listdir(str(tmp_path)) == []


def test_input_size_100000_in_one_line(tmp_path):
    # The script as a user runs it: no traceback, nothing written.
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'export_onnx.py'),
         '--pretrained-model', 'cityscapes', '--input-size', '100000',
         'out.onnx'], cwd=str(tmp_path), capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    if _onnx_usable():
        assert lines[0].startswith('error: --input-size 100000 needs about ')
    else:
        assert 'requirements-extras.txt' in lines[0]
    assert os.listdir(str(tmp_path)) == []


class _Graph(object):
    def __init__(self, fail=False):
        self.fail = fail

    def SerializeToString(self):
        if self.fail:
            raise MemoryError()
        return b'not a graph'


@needs_runtime
@pytest.mark.parametrize('where', ['load', 'trace', 'serialize', 'check',
                                   'write'])
def test_out_of_memory_anywhere_in_the_export_is_one_line(
        where, tmp_path, capsys, monkeypatch):

    def out_of_memory(*args, **kwargs):
        raise MemoryError()

    model = types.SimpleNamespace(input_size=(64, 64), n_class=19,
                                  dataset=None)
    monkeypatch.setattr(models, 'build_model', out_of_memory
                        if where == 'load' else lambda *a, **k: model)
    monkeypatch.setattr(onnx_export, 'to_onnx', out_of_memory
                        if where == 'trace' else
                        lambda *a, **k: _Graph(where == 'serialize'))
    monkeypatch.setattr(onnx_export, 'check_graph', out_of_memory
                        if where == 'check' else lambda *a: (0.0, 1.0))
    if where == 'write':
        monkeypatch.setattr(atomic, 'write_atomic', out_of_memory)
    code, err = run_main(['--model', 'pspnet_resnet50', '--pretrained-model',
                          'cityscapes', '--input-size', '64', '--check',
                          str(tmp_path / 'out.onnx')], capsys)
    assert code == 2 and err.count('\n') == 1, err
    assert err.startswith('error: out of memory exporting {}'.format(
        tmp_path / 'out.onnx'))
    assert 'nothing was written' in err and 'Traceback' not in err
    assert os.listdir(str(tmp_path)) == []
