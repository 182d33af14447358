"""caffe2npz.py on synthetic caffemodels in PSPNet's layout (see
caffemodel_factory.py): every array against its blob, the inference of
depth, classes and input size, refusals of bad files, and demo.py on the
result."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from pspnet import atomic
from pspnet.caffe import convert_caffemodel
from pspnet.caffe import layout
from pspnet.caffe import reader
from pspnet.caffe import schema
from pspnet.errors import UserError
from pspnet.links import PSPNetResNet101
from pspnet.links import PSPNetResNet50
from pspnet.pretrained import link_shapes
from tests.helpers import caffemodel_factory as factory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BN_ARRAYS = ('gamma', 'beta', 'avg_mean', 'avg_var')


def expected_sources(n_layer):
    """npz array name -> (Caffe layer, blob index), PSPNet's naming restated
    here independently of pspnet.caffe.layout."""
    sources = {}

    def conv_bn(layer, link):
        sources[link + '/conv/W'] = (layer, 0)
        for i, name in enumerate(BN_ARRAYS):
            sources['{}/bn/{}'.format(link, name)] = (layer + '/bn', i)

    conv_bn('conv1_1_3x3_s2', 'extractor/conv1_1')
    conv_bn('conv1_2_3x3', 'extractor/conv1_2')
    conv_bn('conv1_3_3x3', 'extractor/conv1_3')
    for stage, n_unit in zip((2, 3, 4, 5), factory.UNITS[n_layer]):
        for m in range(1, n_unit + 1):
            unit = 'extractor/res{}/{}'.format(
                stage, 'a' if m == 1 else 'b{}'.format(m - 1))
            layer = 'conv{}_{}_'.format(stage, m)
            conv_bn(layer + '1x1_reduce', unit + '/conv1')
            conv_bn(layer + '3x3', unit + '/conv2')
            conv_bn(layer + '1x1_increase', unit + '/conv3')
            if m == 1:
                conv_bn(layer + '1x1_proj', unit + '/residual_conv')
    for index, bin_ in enumerate((6, 3, 2, 1)):
        conv_bn('conv5_3_pool{}_conv'.format(bin_), 'ppm/{}'.format(index))
    conv_bn('conv5_4', 'head_conv1')
    sources['head_conv2/W'] = ('conv6', 0)
    sources['head_conv2/b'] = ('conv6', 1)
    return sources


def check_every_array(npz_path, layers, seed=0):
    """Each array of the npz equals the blob it comes from."""
    shapes = {layer.name: layer.blob_shapes for layer in layers}
    n_layer = 101 if 'conv4_23_3x3' in shapes else 50
    sources = expected_sources(n_layer)
    with np.load(npz_path) as npz:
        names = set(npz.files)
        assert {n for n in names if not n.endswith('/N')} == set(sources)
        for name in names:
            array = npz[name]
            if name.endswith('/N'):
                assert array == 0
                continue
            layer, index = sources[name]
            blob = factory.blob_values(layer, index, shapes[layer][index],
                                       seed)
            if name == 'extractor/conv1_1/conv/W':
                blob = blob[:, ::-1]  # Caffe's BGR input, RGB here
            assert array.dtype == np.float32
            np.testing.assert_array_equal(array, blob.reshape(array.shape),
                                          err_msg=name)


def run_script(*args, cwd=ROOT):
    return subprocess.run([sys.executable] + list(args), cwd=cwd,
                          capture_output=True, text=True)


def leftovers(folder):
    return sorted(n for n in os.listdir(folder)
                  if n.startswith(atomic.TEMP_PREFIX))


@pytest.fixture(scope='module')
def converted50(tmp_path_factory):
    """pspnet50_ADE20K as released: training extras, auxiliary branch,
    *Data types; converted with the script."""
    folder = tmp_path_factory.mktemp('caffe50')
    source = str(folder / 'pspnet50_ADE20K.caffemodel')
    target = str(folder / 'pspnet50_ADE20K.npz')
    layers = factory.write_caffemodel(source, 50, 150, 473)
    result = run_script('caffe2npz.py', source, target)
    yield source, target, layers, result
    for path in (source, target):
        if os.path.exists(path):
            os.remove(path)


@pytest.fixture(scope='module')
def converted101(tmp_path_factory):
    """A ResNet101 model for VOC (21 classes, 473) with the prototxt's type
    names, no training layers and the legacy 4-D blob dims."""
    folder = tmp_path_factory.mktemp('caffe101')
    source = str(folder / 'pspnet101_VOC2012.caffemodel')
    target = str(folder / 'pspnet101_VOC2012.npz')
    layers = factory.write_caffemodel(
        source, 101, 21, 473, aux=False, training_extras=False,
        type_style='prototxt', legacy_dims=True, seed=3)
    report = convert_caffemodel(source, target)
    yield source, target, layers, report
    for path in (source, target):
        if os.path.exists(path):
            os.remove(path)


def test_script_reports_what_it_converted(converted50):
    _, target, _, result = converted50
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert 'PSPNet ResNet50, 150 classes, trained at 473x473 (from the ' \
        '60x60 window of conv5_3_pool1)' in out
    assert 'converted 121 layers into 302 arrays: 60 convolution, ' \
        '60 batch normalization, 1 classifier' in out
    for name, type_ in (('conv4_7', 'ConvolutionData'),
                        ('conv4_7/bn', 'BNData'),
                        ('conv6_1', 'ConvolutionData')):
        assert 'ignored {} ({}): auxiliary training branch, not part of ' \
            'the inference model'.format(name, type_) in out
    assert 'skipped 107 layers without parameters (57 ReLU, 18 Split, ' \
        '16 Eltwise' in out
    assert '--model pspnet_resnet50 --dataset ade20k --input-size 473 ' \
        '--pretrained-model {}'.format(target) in out
    assert os.path.isfile(target)
    assert leftovers(os.path.dirname(target)) == []


def test_every_array_comes_from_its_blob_resnet50(converted50):
    _, target, layers, _ = converted50
    check_every_array(target, layers)


def test_loads_strictly_into_pspnet_resnet50(converted50):
    _, target, _, _ = converted50
    model = PSPNetResNet50(pretrained_model=target, input_size=473)
    assert model.n_class == 150
    np.testing.assert_array_equal(
        model.head_conv2.b.array,
        factory.blob_values('conv6', 1, (150,)))


def test_demo_runs_on_the_converted_file(converted50, tmp_path):
    if not os.path.isfile(os.path.join(ROOT, 'demo.py')):
        pytest.skip('demo.py is not there yet')
    _, target, _, _ = converted50
    image = str(tmp_path / 'street.png')
    rng = np.random.RandomState(0)
    cv2.imwrite(image, rng.randint(0, 256, (64, 80, 3)).astype(np.uint8))
    prefix = str(tmp_path / 'street')
    result = run_script('demo.py', '--model', 'pspnet_resnet50',
                        '--pretrained-model', target, '--input-size', '64',
                        '--output', prefix, image)
    assert result.returncode == 0, result.stderr
    label = cv2.imread(prefix + '_label.png', cv2.IMREAD_UNCHANGED)
    assert label is not None and label.shape == (64, 80)
    assert label.max() < 150


def test_resnet101_every_array_and_the_spec(converted101):
    _, target, layers, report = converted101
    assert report.spec.n_layer == 101
    assert report.spec.n_class == 21
    assert report.spec.input_size == (473, 473)
    assert report.converted == {'convolution': 111,
                                'batch normalization': 111, 'classifier': 1}
    assert report.ignored == []
    assert report.skipped == {'ReLU': 107, 'Eltwise': 33, 'Pooling': 5,
                              'Interp': 5, 'Concat': 1, 'Dropout': 1}
    check_every_array(target, layers, seed=3)
    model = PSPNetResNet101(21, input_size=473, initialW=np.float32(0))
    with np.load(target) as npz:
        assert {k: npz[k].shape for k in npz.files} == link_shapes(model)
    assert report.dataset == 'voc'
    assert '--model pspnet_resnet101 --dataset voc --input-size 473' in \
        report.lines()[-1]


def test_existing_target_survives_a_failed_conversion(converted50, tmp_path):
    source = converted50[0]
    truncated = str(tmp_path / 'truncated.caffemodel')
    with open(source, 'rb') as f, open(truncated, 'wb') as out:
        out.write(f.read(int(os.path.getsize(source) * 0.55)))
    target = str(tmp_path / 'out.npz')
    with open(target, 'w') as f:
        f.write('previous')
    try:
        with pytest.raises(UserError,
                           match='is truncated: the record at byte'):
            convert_caffemodel(truncated, target)
    finally:
        os.remove(truncated)
    with open(target) as f:
        assert f.read() == 'previous'
    assert leftovers(str(tmp_path)) == []


def test_random_bytes_are_refused_by_the_script(tmp_path):
    source = str(tmp_path / 'noise.caffemodel')
    with open(source, 'wb') as f:
        f.write(np.random.RandomState(0).bytes(1 << 20))
    target = str(tmp_path / 'noise.npz')
    result = run_script('caffe2npz.py', source, target)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ')
    assert 'not a Caffe model' in lines[0] or 'not a PSPNet' in lines[0]
    assert os.listdir(str(tmp_path)) == ['noise.caffemodel']


@pytest.mark.parametrize('damage, message', [
    (dict(omit=('conv6',)), 'has no classifier layer conv6'),
    (dict(blob_shapes={'conv4_3_3x3': [(256, 256, 1, 1)]}),
     'blob 0 of layer conv4_3_3x3 has shape (256, 256, 1, 1), but '
     'extractor/res4/b2/conv2/conv/W of the model needs (256, 256, 3, 3)'),
    (dict(omit=('conv3_2_3x3/bn',)),
     'leaves 4 of the 302 arrays of PSPNetResNet50 unfilled: '
     'extractor/res3/b1/conv2/bn/gamma (layer conv3_2_3x3/bn)'),
    (dict(blob_shapes={'conv5_4': [(512, 4096, 3, 3), (512,)]}),
     'layer conv5_4 has a bias, which PSPNet\'s conv5_4 has not'),
])
def test_damaged_models_are_refused(tmp_path, damage, message):
    source = str(tmp_path / 'damaged.caffemodel')
    factory.write_caffemodel(source, 50, 150, 473, values='zeros', **damage)
    target = str(tmp_path / 'damaged.npz')
    try:
        with pytest.raises(UserError) as info:
            convert_caffemodel(source, target)
        assert message in str(info.value)
        assert '\n' not in str(info.value)
        assert sorted(os.listdir(str(tmp_path))) == ['damaged.caffemodel']
    finally:
        os.remove(source)


def write_net(path, layers=(), v1_layers=()):
    m = schema.messages('raw')
    net = m.NetParameter(name='other')
    for name, type_, shape in layers:
        layer = net.layer.add(name=name, type=type_)
        blob = layer.blobs.add()
        blob.shape.dim.extend(shape)
        blob.data.append(np.zeros(shape, '<f4').tobytes())
    for name in v1_layers:
        net.layers.add(name=name)
    with open(path, 'wb') as f:
        f.write(net.SerializeToString())


@pytest.mark.parametrize('make, message', [
    (lambda p: write_net(p, [('conv1', 'Convolution', (64, 3, 7, 7)),
                             ('res2a_branch2a', 'Convolution', (64, 64, 1, 1))
                             ]),
     'is not a PSPNet caffemodel: none of its 2 layers with parameters has '
     'a PSPNet name'),
    (lambda p: write_net(p, v1_layers=['conv1']), 'old V1 layer format'),
    (lambda p: open(p, 'wb').close(), 'is empty'),
    (lambda p: write_net(p, [('conv1_1_3x3_s2', 'Convolution', (64, 3, 3, 3)),
                             ('conv4_9_3x3', 'Convolution', (9, 9, 3, 3))]),
     'has 9 bottleneck units in conv4, but PSPNet'),
    (lambda p: None, 'does not exist'),
])
def test_files_of_other_kinds_are_refused(tmp_path, make, message):
    source = str(tmp_path / 'other.caffemodel')
    make(source)
    with pytest.raises(UserError, match=message):
        convert_caffemodel(source, str(tmp_path / 'other.npz'))
    assert not os.path.exists(str(tmp_path / 'other.npz'))


def test_target_folder_must_exist(tmp_path):
    with pytest.raises(UserError, match='folder of .* does not exist'):
        convert_caffemodel(str(tmp_path / 'a.caffemodel'),
                           str(tmp_path / 'no' / 'a.npz'))


def blob_message(flavour, values, shape=None, legacy=False):
    m = schema.messages(flavour)
    blob = m.BlobProto()
    shape = values.shape if shape is None else shape
    if legacy:
        blob.num, blob.channels, blob.height, blob.width = shape
    else:
        blob.shape.dim.extend(shape)
    if flavour == 'raw':
        blob.data.append(values.astype('<f4').tobytes())
    else:
        blob.data.extend(values.ravel().tolist())
    return schema.messages('raw').BlobProto.FromString(
        blob.SerializeToString())


def test_blob_array_reads_packed_unpacked_and_legacy_blobs():
    values = np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 2, 2)
    for flavour in schema.FLAVOURS:
        for legacy in (False, True):
            array = reader.blob_array(blob_message(flavour, values,
                                                   legacy=legacy))
            assert array.dtype == np.float32 and array.shape == (2, 3, 2, 2)
            np.testing.assert_array_equal(array, values)
    split = schema.messages('raw').BlobProto()
    split.shape.dim.extend([5])
    split.data.extend([np.float32([1, 2]).tobytes(),
                       np.float32([3, 4, 5]).tobytes()])
    np.testing.assert_array_equal(reader.blob_array(split), [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match='holds 24 values, its shape'):
        reader.blob_array(blob_message('raw', values, shape=(2, 3, 2, 3)))


def record(name, blob_shapes=(), pool_kernel=None, interp_size=None):
    return reader.LayerRecord(name, 'X', 0, 0, tuple(blob_shapes), None,
                              pool_kernel, interp_size)


@pytest.mark.parametrize('extra, n_class, size, source', [
    ([record('conv5_3_pool1', pool_kernel=(90, 90))], 19, (713, 713),
     'the 90x90 window of conv5_3_pool1'),
    ([record('conv5_3_pool1', pool_kernel=(60, 60))], 19, (473, 473),
     'the 60x60 window'),
    ([record('conv5_3_pool6_interp', interp_size=(90, 90))], 21, (713, 713),
     'Interp'),
    ([], 21, (473, 473), 'the usual size for 21 classes'),
    ([], 7, (713, 713), 'the usual size for 7 classes'),
])
def test_input_size_is_read_from_the_pyramid(extra, n_class, size, source):
    records = [record('conv4_23_3x3', [(256, 256, 3, 3)]),
               record('conv6', [(n_class, 512, 1, 1), (n_class,)])] + extra
    spec = layout.infer_model(records, 'x', {19: (713, 713),
                                             21: (473, 473)})
    assert spec.n_layer == 101 and spec.n_class == n_class
    assert spec.input_size == size
    assert source in spec.input_from


def test_bn_layers_may_be_named_with_an_underscore():
    assert layout.canonical_name('conv5_4_bn') == 'conv5_4/bn'
    assert layout.canonical_name('conv5_4/bn') == 'conv5_4/bn'
    assert layout.canonical_name('conv6') == 'conv6'


# Paths that must be refused before any work, failures that leave nothing.

@pytest.fixture(scope='module')
def small_model(tmp_path_factory):
    """A ResNet50 caffemodel of zeros (fast to write and convert)."""
    folder = tmp_path_factory.mktemp('small')
    source = str(folder / 'pspnet50.caffemodel')
    factory.write_caffemodel(source, 50, 150, 473, values='zeros')
    return source


def _one_error_line(result):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
    return lines[0]


def test_source_and_target_the_same_file_is_refused(small_model, tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    source = str(work / 'model.caffemodel')
    os.link(small_model, source)
    os.symlink(source, str(work / 'link.npz'))
    os.link(source, str(work / 'hard.npz'))
    size = os.path.getsize(source)
    for target in ('model.caffemodel', './model.caffemodel',
                   '../work/model.caffemodel', str(work / 'link.npz'),
                   'hard.npz'):
        line = _one_error_line(run_script(
            os.path.join(ROOT, 'caffe2npz.py'), 'model.caffemodel', target,
            cwd=str(work)))
        assert 'are the same file' in line
        assert os.path.getsize(source) == size
    assert sorted(os.listdir(str(work))) == ['hard.npz', 'link.npz',
                                              'model.caffemodel']


def test_folder_as_source_is_named_a_folder(tmp_path):
    line = _one_error_line(run_script('caffe2npz.py', str(tmp_path),
                                      str(tmp_path / 'x.npz')))
    assert 'is a folder, not a caffemodel' in line


FULL_DISK = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
# Writes past this size fail as on a full disk.
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
sys.argv = ['caffe2npz.py', {source!r}, {target!r}]
runpy.run_path({script!r}, run_name='__main__')
"""


@pytest.mark.parametrize('fraction', [0.0, 0.3, 0.9])
def test_full_disk_is_one_line_and_leaves_nothing(small_model, tmp_path,
                                                  fraction):
    target = str(tmp_path / 'out.npz')
    code = FULL_DISK.format(
        limit=int(os.path.getsize(small_model) * fraction) + 1,
        source=small_model, target=target,
        script=os.path.join(ROOT, 'caffe2npz.py'))
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                            capture_output=True, text=True)
    line = _one_error_line(result)
    assert 'could not write {}'.format(target) in line
    assert 'free some space' in line
    assert os.listdir(str(tmp_path)) == []


def test_a_killed_conversion_leaves_litter_the_next_run_removes(
        small_model, tmp_path):
    target = str(tmp_path / 'out.npz')
    process = subprocess.Popen(
        [sys.executable, 'caffe2npz.py', small_model, target], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if leftovers(str(tmp_path)) or process.poll() is not None:
                break
            import time
            time.sleep(0.05)
        process.kill()
    finally:
        process.wait()
    if not leftovers(str(tmp_path)):
        pytest.skip('the conversion ended before it could be killed')
    result = run_script('caffe2npz.py', small_model, target)
    assert result.returncode == 0, result.stderr
    assert os.listdir(str(tmp_path)) == ['out.npz']
