"""Low-precision exports (export_onnx.py --precision int8|bf16, OUT.xml;
pspnet.quantization) and exported models run by demo.py and
eval_semantic_segmentation.py (pspnet.exported), on a tiny ResNet50 with
random sensitive weights and a generated dataset described by a
dataset.json.

Needs the optional packages of requirements-extras.txt (onnx, onnxruntime,
openvino); without them these tests skip, except those of the errors for
their absence.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

import chainer
import numpy as np
import pytest
from PIL import Image

import demo as demo_script
import eval_semantic_segmentation as eval_script
import export_onnx
from pspnet import exported
from pspnet import onnx_export
from pspnet import prediction
from pspnet import PSPNetResNet50
from pspnet import quantization
from pspnet.datasets import registry
from pspnet.errors import UserError
from pspnet.evaluations import calc_semantic_segmentation_confusion
from pspnet.evaluations import checkpoints
from pspnet.image_io import read_image
from tests.helpers import dataset_factory
from tests.helpers.random_weights import sensitive_model
from tests.helpers.random_weights import smooth_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
INSTALL = 'needs {}: pip install -r requirements-extras.txt'
# One thread in every process, so that one process and two compute with
# the same arithmetic.
ENV = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1')
CLASSES = ('background', 'cat', 'dog')
INPUT_SIZE = 65


def _usable(check):
    try:
        check()
    except Exception:
        return False
    return True


HAVE_QUANTIZER = _usable(quantization.require_quantizer)
HAVE_OPENVINO = _usable(exported.require_openvino)
needs_quantizer = pytest.mark.skipif(
    not HAVE_QUANTIZER, reason=INSTALL.format('onnx below 1.19 and '
                                              'onnxruntime'))
needs_openvino = pytest.mark.skipif(
    not (HAVE_QUANTIZER and HAVE_OPENVINO),
    reason=INSTALL.format('onnx below 1.19, onnxruntime and openvino'))


def _require(openvino=False):
    if not HAVE_QUANTIZER or (openvino and not HAVE_OPENVINO):
        pytest.skip(INSTALL.format('onnx below 1.19, onnxruntime' + (
            ' and openvino' if openvino else '')))


def run_main(main, argv, capsys):
    """``main(argv)``: (exit status, stdout, stderr)."""
    code = 0
    try:
        main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code, err):
    lines = [line for line in err.splitlines() if line.startswith('error')]
    assert code == 2 and len(lines) == 1, err
    assert 'Traceback' not in err, err
    return lines[0]


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """The dataset, the float32 weights (npz) and their INT8 export as
    ONNX, made once."""
    root = tmp_path_factory.mktemp('low')
    rng = np.random.RandomState(3)
    # Images larger than the input size in one side (windows).
    size = (int(rng.randint(50, 80)), int(rng.randint(80, 140)))
    dataset = dataset_factory.make_own_dataset(
        str(root / 'shapes'), classes=CLASSES, n_images=4, size=size,
        extra={'input_size': INPUT_SIZE}, seed=3)
    model = sensitive_model(PSPNetResNet50, len(CLASSES), INPUT_SIZE, rng)
    weights = str(root / 'float32.npz')
    chainer.serializers.save_npz(weights, model, compression=False)
    return {'root': root, 'dataset': dataset, 'weights': weights,
            'size': size, 'exports': {}}


def export_args(work, *extra):
    return ['--model', 'pspnet_resnet50', '--pretrained-model',
            work['weights'], '--dataset', work['dataset'],
            '--calibration-images', '2', '--evaluation-images', '3'
            ] + list(extra)


def get_export(work, name, capsys=None):
    """An export of the work's weights (``int8.onnx``, ``int8.xml``), made
    once; (path, printed lines)."""
    _require(openvino=name.endswith('.xml'))
    if name not in work['exports']:
        path = str(work['root'] / name)
        precision = name.split('.')[0]
        argv = export_args(work, '--precision', precision, path)
        if precision != 'int8':
            argv = [a for a in argv if a not in ('--calibration-images', '2')]
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, 'export_onnx.py')] + argv,
            cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr
        work['exports'][name] = (path, result.stdout.splitlines())
    return work['exports'][name]


def dataset_items(work, split):
    data = registry.lookup(work['dataset']).get(split)
    return data, [data[i] for i in range(len(data))]


# The calibration windows ----------------------------------------------------

def test_calibration_windows_are_what_predict_feeds_the_network():
    # Images smaller and larger than the input size, odd and even, long
    # on either side: the calibration windows are, one for one, the
    # inputs of predict at the image's scale (without flips).
    rng = np.random.RandomState(0)
    size = (int(rng.randint(48, 70)), int(rng.randint(48, 70)))
    mean = rng.uniform(80, 130, (3, 1, 1)).astype(np.float32)
    for _ in range(6):
        shape = (int(rng.randint(5, 3 * size[0])),
                 int(rng.randint(5, 3 * size[1])))
        img = smooth_image(rng, shape)
        fed = []

        def logits(x):
            fed.extend(np.array(w) for w in x)
            return np.zeros((len(x), 4) + size, np.float32)
        segmenter = onnx_export.ExportedSegmenter(
            logits, size, 4, mean=mean, flip=False)
        segmenter.predict_scores(img)
        done = []
        windows = list(quantization.calibration_windows(
            [(img, None)], [0], size, mean, done.append))
        assert done == [1]
        assert len(windows) == len(fed) >= 1
        for window, want in zip(windows, fed):
            assert window.shape == (1, 3) + size
            assert window.dtype == np.float32
            np.testing.assert_array_equal(window[0], want)


@pytest.mark.parametrize('n_items', [1, 2, 7, 100, 2975])
def test_spread_indices(n_items):
    for n in (1, 2, 3, 16, 500, 5000):
        picked = quantization.spread_indices(n_items, n)
        assert len(picked) == min(n, n_items)
        assert picked == sorted(set(picked))
        assert picked[0] == 0 and 0 <= picked[-1] < n_items
        if n > 1:
            assert picked[-1] == n_items - 1


# The INT8 export ------------------------------------------------------------

@needs_quantizer
def test_int8_graph(work):
    import onnx
    path, lines = get_export(work, 'int8.onnx')
    graph = onnx.load(path)
    assert {op.domain: op.version for op in graph.opset_import}[''] == \
        quantization.INT8_OPSET
    nodes = graph.graph.node
    init = {t.name: t for t in graph.graph.initializer}
    producer = {out: n for n in nodes for out in n.output}
    convs = [n for n in nodes if n.op_type == 'Conv']
    # Batch normalization is folded: no BatchNormalization node is left.
    assert not [n for n in nodes if n.op_type == 'BatchNormalization']
    float_convs = []
    for conv in convs:
        weight = producer.get(conv.input[1])
        if weight is None or weight.op_type != 'DequantizeLinear':
            float_convs.append(conv)
            continue
        # Per-channel int8 weights: one scale per output channel.
        q, scale = init[weight.input[0]], init[weight.input[1]]
        assert q.data_type == onnx.TensorProto.INT8
        assert list(scale.dims) == [q.dims[0]] and q.dims[0] > 1
        # Quantized activations in.
        assert producer[conv.input[0]].op_type == 'DequantizeLinear'
    # Only the classifier is float32, and the final upsampling takes its
    # float32 logits.
    last = producer[onnx_export.OUTPUT_NAME]
    assert last.op_type == 'Resize'
    assert [c.name for c in float_convs] == [producer[last.input[0]].name]
    assert len(convs) > 50


@needs_quantizer
def test_int8_metadata_round_trip(work):
    path, lines = get_export(work, 'int8.onnx')
    model = exported.load(path)
    meta = model.metadata
    assert meta.model_name == model.model_name == 'pspnet_resnet50'
    assert meta.network == 'PSPNetResNet50'
    assert model.n_class == meta.n_class == len(CLASSES)
    assert model.input_size == meta.input_size == (INPUT_SIZE,) * 2
    link = PSPNetResNet50(pretrained_model=work['weights'],
                          input_size=INPUT_SIZE)
    np.testing.assert_array_equal(model.mean, link.mean)
    assert model.mean.shape == (3, 1, 1)
    assert meta.precision == model.precision == 'int8'
    assert meta.dataset == work['dataset']
    assert model.dataset.name == work['dataset']
    assert model.dataset.label_names == CLASSES
    n_calibration = len(quantization.spread_indices(4, 2))
    assert meta.values['calibration'].endswith(
        '{} images of the train split of {}'.format(n_calibration,
                                                   work['dataset']))
    assert meta.values['accuracy'] in lines
    assert model.runtime == 'ONNX Runtime'


@needs_quantizer
def test_int8_measurement_is_what_eval_finds(work, capsys):
    # The export's figures: float32's mean IoU is eval's of the npz on the
    # measured images, the int8 one eval's of the export; the agreement is
    # that of their labels.
    path, lines = get_export(work, 'int8.onnx')
    line = [l for l in lines if l.startswith('int8 against float32')][0]
    assert 'on 3 images of the val split' in line
    data, items = dataset_items(work, 'val')
    picked = quantization.spread_indices(len(data), 3)
    link = PSPNetResNet50(pretrained_model=work['weights'],
                          input_size=INPUT_SIZE)
    low = exported.load(path)
    want, got = [], []
    for i in picked:
        img, label = items[i]
        want.append(link.predict([img])[0])
        got.append(low.predict([img])[0])
    labels = [items[i][1] for i in picked]
    mious = []
    for preds in (got, want):
        confusion = calc_semantic_segmentation_confusion(
            preds, labels, n_class=len(CLASSES))
        iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1)
                                    - np.diag(confusion))
        mious.append(np.nanmean(iou))
    agreement = np.mean(np.concatenate([(a == b).ravel()
                                        for a, b in zip(got, want)]))
    assert 'mean IoU {:.4f} (float32 {:.4f}, {:+.2f} points)'.format(
        mious[0], mious[1], 100 * (mious[0] - mious[1])) in line
    assert 'labels equal on {:.3%} of the pixels'.format(agreement) in line
    # The quantized model predicts much as float32 (sensitive weights:
    # labels change often, yet most stay).
    assert agreement > 0.8


# Exported models in demo.py and eval_semantic_segmentation.py --------------

def _label_png(path):
    return np.asarray(Image.open(path)).astype(np.int32)


@pytest.mark.parametrize('name', ['int8.onnx', 'int8.xml'])
def test_demo_runs_the_export_with_predicts_windows(work, name, tmp_path,
                                                    capsys):
    path, _ = get_export(work, name)
    images = sorted(glob.glob(os.path.join(os.path.dirname(
        work['dataset']), 'images', 'val', '*')))
    for extra, flip, scales in (([], True, None),
                                (['--no-flip', '--scales', '0.5,1.25'],
                                 False, (0.5, 1.25))):
        out = str(tmp_path / 'out{}'.format(len(extra))) + os.sep
        code, stdout, err = run_main(demo_script.main, [
            '--pretrained-model', path, '--output', out] + extra + images[:2],
            capsys)
        assert code in (0, None), err
        assert '{}: PSPNetResNet50, 3 classes'.format(path) in stdout
        model = exported.load(path, flip=flip, scales=scales)
        for image in images[:2]:
            stem = os.path.splitext(os.path.basename(image))[0]
            want = model.predict([read_image(image)])[0]
            got = _label_png(os.path.join(out, stem + '_label.png'))
            np.testing.assert_array_equal(got, want)


def _eval_args(work, path, *extra):
    return ['--dataset', work['dataset'], '--pretrained-model', path
            ] + list(extra)


def _run_eval(argv, mpi=0, timeout=600):
    command = [sys.executable, os.path.join(ROOT,
                                            'eval_semantic_segmentation.py')]
    if mpi:
        command = [MPIEXEC, '-n', str(mpi)] + command
    return subprocess.run(command + argv, cwd=ROOT, env=ENV, timeout=timeout,
                          capture_output=True, text=True)


@pytest.mark.parametrize('name', ['int8.onnx', 'int8.xml'])
def test_eval_of_the_export_is_its_predictions(work, name, tmp_path,
                                               capsys):
    path, _ = get_export(work, name)
    out, pred = str(tmp_path / 'e.json'), str(tmp_path / 'pred')
    code, stdout, err = run_main(eval_script.main, _eval_args(
        work, path, '--json', out, '--save-predictions', pred,
        '--batchsize', '2'), capsys)
    assert code in (0, None), err
    with open(out) as f:
        record = json.load(f)
    data, items = dataset_items(work, 'val')
    model = exported.load(path)
    preds = [model.predict([img])[0] for img, _ in items]
    expected = calc_semantic_segmentation_confusion(
        preds, [label for _, label in items], n_class=len(CLASSES))
    np.testing.assert_array_equal(record['confusion'], expected)
    files = sorted(glob.glob(os.path.join(pred, '**', '*.png'),
                             recursive=True))
    assert len(files) == len(items)
    for file, want in zip(files, preds):
        np.testing.assert_array_equal(_label_png(file), want)


@needs_quantizer
def test_mpiexec_eval_of_the_export(work, tmp_path):
    if not os.path.exists(MPIEXEC):
        pytest.skip('mpiexec of the mpich wheel not installed')
    path, _ = get_export(work, 'int8.onnx')
    outs = []
    for processes in (0, 2):
        out = str(tmp_path / 'n{}.json'.format(processes))
        result = _run_eval(_eval_args(work, path, '--json', out),
                           mpi=processes)
        assert result.returncode == 0, result.stderr
        # The runtime line once.
        assert result.stdout.count('int8, on ONNX Runtime') == 1, \
            result.stdout
        with open(out) as f:
            outs.append(json.load(f))
    assert outs[0] == outs[1]
    assert outs[0]['n_images'] == 4


def _broken_copy(work, tmp_path, index):
    """A copy of the dataset whose ``index``-th val image is corrupt, and
    a function that restores it."""
    folder = str(tmp_path / 'shapes')
    shutil.copytree(os.path.dirname(work['dataset']), folder)
    image = sorted(glob.glob(os.path.join(folder, 'images', 'val', '*')))[
        index]
    with open(image, 'rb') as f:
        content = f.read()
    with open(image, 'wb') as f:
        f.write(b'broken')

    def restore():
        with open(image, 'wb') as f:
            f.write(content)
    return os.path.join(folder, 'dataset.json'), restore


@needs_quantizer
def test_eval_of_an_export_resumes_only_with_that_file(work, tmp_path,
                                                       capsys):
    path, _ = get_export(work, 'int8.onnx')
    dataset, restore = _broken_copy(work, tmp_path, 2)
    out = str(tmp_path / 'r.json')
    argv = ['--dataset', dataset, '--pretrained-model', path, '--json', out,
            '--checkpoint-interval', '0']
    line = one_error_line(*run_main(eval_script.main, argv, capsys)[::2])
    assert 'cannot read image' in line
    checkpoint = checkpoints.checkpoint_path(out)
    assert os.path.exists(checkpoint)
    restore()
    # Another file of the same model is another model to the checkpoint.
    other = str(tmp_path / 'other.onnx')
    shutil.copy(path, other)
    line = one_error_line(*run_main(eval_script.main, argv[:2] + [
        '--pretrained-model', other] + argv[4:], capsys)[::2])
    assert 'weights' in line and 'delete' in line
    code, _, err = run_main(eval_script.main, argv, capsys)
    assert code in (0, None), err
    assert 'continuing from' in err
    whole = str(tmp_path / 'whole.json')
    run_main(eval_script.main, argv[:-3] + [whole], capsys)
    with open(out) as f, open(whole) as g:
        assert json.load(f) == json.load(g)


# Refusals -------------------------------------------------------------------

@needs_quantizer
@pytest.mark.parametrize('case', [
    'gpu', 'float16', 'tf32', 'other depth', 'other input size',
    'other class count', 'missing file', 'not an onnx file', 'no metadata',
    'another interface'])
def test_demo_and_eval_refuse_in_one_line(work, case, tmp_path, capsys):
    import onnx
    path, _ = get_export(work, 'int8.onnx')
    image = sorted(glob.glob(os.path.join(os.path.dirname(
        work['dataset']), 'images', 'val', '*')))[0]
    extra, dataset = [], work['dataset']
    expected = {
        'gpu': '--gpu is for Chainer models',
        'float16': '--dtype float16 is for Chainer models',
        'tf32': '--tf32 is for Chainer models',
        'other depth': 'is a pspnet_resnet50 but --model is '
                       'pspnet_resnet101',
        'other input size': 'was exported at input size 65x65',
        'other class count': 'has 3 classes but',
        'missing file': 'does not exist',
        'not an onnx file': 'cannot read',
        'no metadata': 'is no PSPNet export (its metadata has no model, '
                       'n_class, input_size, mean)',
        'another interface': 'is no PSPNet export (input',
    }[case]
    if case == 'gpu':
        extra = ['--gpu', '0']
    elif case == 'float16':
        extra = ['--dtype', 'float16']
    elif case == 'tf32':
        extra = ['--tf32']
    elif case == 'other depth':
        extra = ['--model', 'pspnet_resnet101']
    elif case == 'other input size':
        extra = ['--input-size', '97']
    elif case == 'other class count':
        dataset = dataset_factory.make_own_dataset(
            str(tmp_path / 'five'), classes=tuple('abcde'), n_images=1,
            splits=('val',))
    elif case == 'missing file':
        path = str(tmp_path / 'missing.onnx')
    elif case == 'not an onnx file':
        path = str(tmp_path / 'text.onnx')
        with open(path, 'w') as f:
            f.write('not a graph')
    elif case == 'no metadata':
        graph = onnx.load(get_export(work, 'int8.onnx')[0])
        del graph.metadata_props[:]
        path = str(tmp_path / 'plain.onnx')
        onnx.save(graph, path)
    elif case == 'another interface':
        x = onnx.helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT,
                                               [1, 3, 8, 8])
        y = onnx.helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT,
                                               [1, 3, 8, 8])
        graph = onnx.helper.make_model(onnx.helper.make_graph(
            [onnx.helper.make_node('Relu', ['x'], ['y'])], 'g', [x], [y]),
            opset_imports=[onnx.helper.make_opsetid('', 13)])
        graph.ir_version = 7
        path = str(tmp_path / 'relu.onnx')
        onnx.save(graph, path)
    before = sorted(os.listdir(str(tmp_path)))
    out = str(tmp_path / 'out') + os.sep
    argv = ['--pretrained-model', path, '--dataset', dataset] + extra
    line = one_error_line(*run_main(demo_script.main, argv + [
        '--output', out, image], capsys)[::2])
    assert expected in line, line
    json_out = str(tmp_path / 'e.json')
    line = one_error_line(*run_main(eval_script.main, argv + [
        '--json', json_out], capsys)[::2])
    assert expected in line, line
    assert sorted(os.listdir(str(tmp_path))) == before


@needs_openvino
def test_openvino_pair_of_two_exports_is_refused(work, tmp_path, capsys):
    path, _ = get_export(work, 'int8.xml')
    image = sorted(glob.glob(os.path.join(os.path.dirname(
        work['dataset']), 'images', 'val', '*')))[0]
    xml = str(tmp_path / 'm.xml')
    shutil.copy(path, xml)
    argv = ['--pretrained-model', xml, '--output',
            str(tmp_path / 'o') + os.sep, image]
    line = one_error_line(*run_main(demo_script.main, argv, capsys)[::2])
    assert 'has no m.bin beside it' in line
    # The same size, other weights: the digest in the .xml tells.
    with open(exported.weights_path_of(path), 'rb') as f:
        weights = bytearray(f.read())
    weights[len(weights) // 2] ^= 1
    with open(exported.weights_path_of(xml), 'wb') as f:
        f.write(weights)
    line = one_error_line(*run_main(demo_script.main, argv, capsys)[::2])
    assert 'm.bin is not the weights file of' in line


@pytest.mark.parametrize('runtime', ['onnxruntime', 'openvino'])
def test_missing_runtime_in_one_line(work, runtime, tmp_path, capsys,
                                     monkeypatch):
    name = 'model.onnx' if runtime == 'onnxruntime' else 'model.xml'
    path = str(tmp_path / name)
    with open(path, 'w') as f:
        f.write('x')
    with open(exported.weights_path_of(path), 'w') as f:
        f.write('x')
    monkeypatch.setitem(sys.modules, runtime, None)  # the import fails
    image = str(tmp_path / 'i.png')
    Image.new('RGB', (8, 8)).save(image)
    line = one_error_line(*run_main(demo_script.main, [
        '--pretrained-model', path, image], capsys)[::2])
    assert line == ('error: {} is not installed{}; pip install -r '
                    'requirements-extras.txt'.format(
                        runtime, ', which .xml models need'
                        if runtime == 'openvino' else ''))
    # The export of an INT8 model or an .xml file.
    out = str(tmp_path / ('q.onnx' if runtime == 'onnxruntime' else 'q.xml'))
    argv = ['--model', 'pspnet_resnet50', '--pretrained-model',
            work['weights'], '--dataset', work['dataset']]
    if runtime == 'onnxruntime':
        argv += ['--precision', 'int8']
    line = one_error_line(*run_main(export_onnx.main, argv + [out],
                                    capsys)[::2])
    assert '{} is not installed'.format(runtime) in line
    assert 'requirements-extras.txt' in line
    assert not os.path.exists(out)


@needs_quantizer
@pytest.mark.parametrize('case', [
    'bf16 to onnx', 'check of int8', 'calibration of float32',
    'calibration of bf16', 'drop without images', 'other class count',
    'split without labels', 'no dataset'])
def test_export_refuses_in_one_line(work, case, tmp_path, capsys):
    out = str(tmp_path / 'q.onnx')
    argv = ['--model', 'pspnet_resnet50', '--pretrained-model',
            work['weights'], '--dataset', work['dataset']]
    expected = {
        'bf16 to onnx': '--precision bf16 runs on OpenVINO: write an .xml',
        'check of int8': '--check compares a float32 graph',
        'calibration of float32': '--calibration-images is for --precision '
                                  'int8 or bf16',
        'calibration of bf16': 'a bf16 export needs no calibration',
        'drop without images': '--max-miou-drop needs images',
        'other class count': 'has 5 classes but the model has 3',
        'split without labels': 'the test split of',
        'no dataset': 'needs images of the model\'s dataset; pass '
                      '--calibration DATASET',
    }[case]
    if case == 'bf16 to onnx':
        argv += ['--precision', 'bf16']
    elif case == 'check of int8':
        argv += ['--precision', 'int8', '--check']
    elif case == 'calibration of float32':
        argv += ['--calibration-images', '4']
    elif case == 'calibration of bf16':
        _require(openvino=True)
        if not exported.openvino_has_bf16():
            pytest.skip('this CPU has no bfloat16 units')
        argv += ['--precision', 'bf16', '--calibration-split', 'val']
        out = str(tmp_path / 'q.xml')
    elif case == 'drop without images':
        argv += ['--precision', 'int8', '--evaluation-images', '0',
                 '--max-miou-drop', '1']
    elif case == 'other class count':
        five = dataset_factory.make_own_dataset(
            str(tmp_path / 'five'), classes=tuple('abcde'), n_images=1,
            splits=('train', 'val'))
        argv += ['--precision', 'int8', '--calibration', five]
    elif case == 'split without labels':
        unlabelled = dataset_factory.make_own_dataset(
            str(tmp_path / 'nolabels'), classes=CLASSES, n_images=2,
            splits=('train', 'val'), extra={'test': {'images': 'images/val'}})
        argv += ['--precision', 'int8', '--calibration', unlabelled,
                 '--evaluation-split', 'test']
    elif case == 'no dataset':
        argv = argv[:-2] + ['--precision', 'int8']
        weights = str(tmp_path / 'w.npz')
        model = PSPNetResNet50(len(CLASSES) + 4, input_size=INPUT_SIZE)
        chainer.serializers.save_npz(weights, model)
        argv[3] = weights
        argv += ['--input-size', str(INPUT_SIZE)]
    before = sorted(os.listdir(str(tmp_path)))
    line = one_error_line(*run_main(export_onnx.main, argv + [out],
                                    capsys)[::2])
    assert expected in line, line
    assert sorted(os.listdir(str(tmp_path))) == before


@needs_quantizer
def test_a_drop_beyond_the_threshold_writes_nothing(work, tmp_path, capsys,
                                                    monkeypatch):
    # The measurement is real up to the figures: a drop of 0.6 points
    # against --max-miou-drop 0.5 refuses; 0.4 passes.
    real = quantization.compare

    def shifted(drop):
        def compare(*args, **kwargs):
            result = real(*args, **kwargs)
            result['miou'] = result['miou_float32'] - drop / 100
            result['drop'] = drop
            return result
        return compare

    out = str(tmp_path / 'q.onnx')
    for name in ('q.onnx', 'q.xml') if HAVE_OPENVINO else ('q.onnx',):
        out = str(tmp_path / name)
        monkeypatch.setattr(quantization, 'compare', shifted(0.6))
        line = one_error_line(*run_main(export_onnx.main, export_args(
            work, '--precision', 'int8', '--max-miou-drop', '0.5',
            '--evaluation-images', '1', out), capsys)[::2])
        assert '0.60 points below float32\'s' in line
        assert 'more than --max-miou-drop 0.5; nothing was written' in line
        assert os.listdir(str(tmp_path)) == []
    monkeypatch.setattr(quantization, 'compare', shifted(0.4))
    code, stdout, err = run_main(export_onnx.main, export_args(
        work, '--precision', 'int8', '--max-miou-drop', '0.5',
        '--evaluation-images', '1', out), capsys)
    assert code in (0, None), err
    assert '-0.40 points' in stdout
    assert os.path.exists(out)


@needs_openvino
def test_float32_and_bf16_openvino_exports(work, tmp_path, capsys):
    path = str(tmp_path / 'f.xml')
    code, stdout, err = run_main(export_onnx.main, [
        '--model', 'pspnet_resnet50', '--pretrained-model', work['weights'],
        '--dataset', work['dataset'], '--check', path], capsys)
    assert code in (0, None), err
    assert 'OpenVINO against Chainer on a random image' in stdout
    assert sorted(os.listdir(str(tmp_path))) == ['f.bin', 'f.xml']
    model = exported.load(path)
    assert model.precision == 'float32' and model.runtime == 'OpenVINO'
    # float32 on OpenVINO is Chainer's function.
    link = PSPNetResNet50(pretrained_model=work['weights'],
                          input_size=INPUT_SIZE)
    rng = np.random.RandomState(1)
    x = smooth_image(rng, (INPUT_SIZE,) * 2)[None]
    error, agreement = onnx_export.compare_logits(link, model.runner, x)
    assert error < 1e-4 and agreement > 0.999
    if not exported.openvino_has_bf16():
        pytest.skip('this CPU has no bfloat16 units')
    path = str(tmp_path / 'b.xml')
    code, stdout, err = run_main(export_onnx.main, [
        '--model', 'pspnet_resnet50', '--pretrained-model', work['weights'],
        '--dataset', work['dataset'], '--precision', 'bf16',
        '--evaluation-images', '1', path], capsys)
    assert code in (0, None), err
    assert 'bf16 against float32 on 1 images' in stdout
    model = exported.load(path)
    assert model.precision == 'bf16'
    # bfloat16 rounds: not float32's logits, yet close.
    error, agreement = onnx_export.compare_logits(link, model.runner, x)
    assert 1e-4 < error < 0.2


def test_metadata_refusals():
    good = {'model': 'PSPNetResNet50', 'n_class': '3', 'input_size': '65,65',
            'mean': '123.0,117.0,104.0', 'precision': 'int8'}
    meta = exported.Metadata(good, 'm.onnx')
    assert meta.input_size == (65, 65) and meta.n_class == 3
    for key, value in (('model', 'ResNet'), ('n_class', '0'),
                       ('input_size', '65'), ('input_size', '20,20'),
                       ('mean', '1,2'), ('precision', 'int4'),
                       ('n_class', 'three')):
        with pytest.raises(UserError, match='damaged PSPNet metadata.*'
                           'export the model again'):
            exported.Metadata(dict(good, **{key: value}), 'm.onnx')
    for key in exported.REQUIRED_KEYS:
        values = dict(good)
        del values[key]
        with pytest.raises(UserError, match='is no PSPNet export'):
            exported.Metadata(values, 'm.onnx')
    # Files of the float32 export before the precision key: float32.
    del good['precision']
    assert exported.Metadata(good, 'm.onnx').precision == 'float32'


def test_labels_of_is_argmax():
    # Integer scores: many ties, where argmax takes the first class.
    rng = np.random.RandomState(0)
    for _ in range(10):
        n_class = int(rng.randint(1, 30))
        shape = (n_class, int(rng.randint(1, 40)), int(rng.randint(1, 40)))
        scores = rng.randint(0, 4, shape).astype(np.float32)
        if rng.rand() < 0.5:
            scores = rng.rand(*shape).astype(np.float32)
        labels = prediction.labels_of(scores)
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(labels, scores.argmax(axis=0))
