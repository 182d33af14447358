"""caffe2npz.py --with-aux: the original models' auxiliary branch converted
into the training chain's auxiliary head, loaded whole by training
(train_multi.py --pretrained-model) and skipped by inference."""

import json
import os
import subprocess
import sys

import chainer
import numpy as np
import pytest

from pspnet import models
from pspnet import pretrained
from pspnet.caffe import convert_caffemodel
from pspnet.errors import UserError
from pspnet.links import PSPNetResNet50
from pspnet.training import initial_weights
from pspnet.training.train_chain import TrainChain
from tests.helpers import caffemodel_factory as factory
from tests.helpers import dataset_factory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
BN_ARRAYS = ('gamma', 'beta', 'avg_mean', 'avg_var')


def aux_sources(n_layer):
    """Training-chain array -> (Caffe layer, blob), restated here."""
    conv = 'conv4_{}'.format(factory.UNITS[n_layer][2] + 1)
    sources = {'aux_conv1/conv/W': (conv, 0),
               'aux_conv2/W': ('conv6_1', 0), 'aux_conv2/b': ('conv6_1', 1)}
    for i, name in enumerate(BN_ARRAYS):
        sources['aux_conv1/bn/' + name] = (conv + '/bn', i)
    return sources


def run_script(*args):
    return subprocess.run([sys.executable] + list(args), cwd=ROOT,
                          capture_output=True, text=True)


def arrays_of(link):
    target = {}
    link.serialize(chainer.serializers.DictionarySerializer(target))
    return target


@pytest.mark.parametrize('n_layer', [50, 101])
def test_factory_aux_branch_is_semsegs_aux_head(n_layer):
    # hszhao/semseg's PSPNet: Conv2d(1024, 256, 3, padding=1, bias=False),
    # BN(256), ReLU, Dropout, Conv2d(256, classes, 1).
    layers = {layer.name: layer for layer in factory.pspnet_layers(
        n_layer, 21, 473)}
    conv = 'conv4_{}'.format({50: 7, 101: 24}[n_layer])
    assert layers[conv].blob_shapes == [(256, 1024, 3, 3)]
    assert layers[conv].conv['pad'] == 1
    assert not layers[conv].conv['bias_term']
    assert layers[conv + '/bn'].blob_shapes == [(1, 256, 1, 1)] * 4
    assert layers['conv6_1'].blob_shapes == [(21, 256, 1, 1), (21,)]
    assert layers['conv6_1'].conv['kernel_size'] == 1


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('aux')
    source = str(folder / 'pspnet50_VOC.caffemodel')
    layers = factory.write_caffemodel(source, 50, 21, 473, seed=5)
    with_aux = str(folder / 'with_aux.npz')
    result = run_script('caffe2npz.py', '--with-aux', source, with_aux)
    plain = str(folder / 'plain.npz')
    convert_caffemodel(source, plain)
    return {'source': source, 'layers': layers, 'with_aux': with_aux,
            'plain': plain, 'result': result, 'folder': folder}


def blob(files, layer, index):
    shapes = {l.name: l.blob_shapes for l in files['layers']}
    return factory.blob_values(layer, index, shapes[layer][index], seed=5)


def test_with_aux_writes_the_model_and_the_aux_head(files):
    result = files['result']
    assert result.returncode == 0, result.stderr
    assert 'ignored conv4_7' not in result.stdout
    assert ('with the auxiliary head (conv4_7, conv4_7/bn, conv6_1) as the '
            "training chain's aux_conv1 and aux_conv2") in result.stdout
    assert ('train_multi.py --dataset voc --model pspnet_resnet50 '
            '--pretrained-model ' + files['with_aux']) in result.stdout
    assert 'converted 124 layers into 309 arrays' in result.stdout
    sources = aux_sources(50)
    with np.load(files['with_aux']) as npz, np.load(files['plain']) as plain:
        assert set(npz.files) == set(plain.files) | set(sources) | {
            'aux_conv1/bn/N'}
        for name in plain.files:
            np.testing.assert_array_equal(npz[name], plain[name], name)
        for name, (layer, index) in sources.items():
            assert npz[name].dtype == np.float32
            np.testing.assert_array_equal(
                npz[name], blob(files, layer, index).reshape(
                    npz[name].shape), name)


def test_inference_loads_skip_the_aux_head(files):
    img = np.random.RandomState(0).uniform(0, 255, (3, 40, 50)).astype(
        np.float32)
    labels = []
    for path in (files['with_aux'], files['plain']):
        model = models.build_model('pspnet_resnet50', 'voc', path,
                                   input_size=49)
        labels.append(model.predict([img])[0])
    np.testing.assert_array_equal(*labels)
    # A file that does not fit is still refused, aux arrays or not.
    with pytest.raises(UserError, match='21 classes'):
        pretrained.load_npz(PSPNetResNet50(n_class=5), files['with_aux'])


@pytest.mark.parametrize('n_class', [21, 5])
def test_training_loads_every_trained_layer(files, n_class):
    path = files['with_aux']
    model = PSPNetResNet50(n_class=n_class, input_size=49)
    initial_weights.load_initial_weights(model, path)
    plan = initial_weights.plan_auxiliary_head(path, n_class)
    assert (plan.channels, plan.ksize) == (256, 1)
    chain = TrainChain(model, aux_channels=plan.channels,
                       aux_ksize=plan.ksize)
    plan.load_into(chain)
    arrays = arrays_of(chain)
    with np.load(path) as npz:
        if n_class == 21:
            # Loaded whole: every array of the chain comes from the file.
            assert set(arrays) == {('model/' + k) if not k.startswith('aux')
                                   else k for k in npz.files}
            assert 'auxiliary head from' in plan.description
        else:
            assert 'without its 21-class classifier' in plan.description
        for key, value in arrays.items():
            name = key[len('model/'):] if key.startswith('model/') else key
            if n_class != 21 and name.startswith(('head_conv2/',
                                                  'aux_conv2/')):
                assert value.shape[0] == n_class
                continue
            np.testing.assert_array_equal(value, npz[name], key)
    assert arrays['aux_conv2/W'].shape == (n_class, 256, 1, 1)
    # The chain computes both losses with the Caffe head's shapes.
    imgs = np.zeros((1, 3, 49, 49), np.float32)
    labels = np.zeros((1, 49, 49), np.int32)
    with chainer.using_config('train', False):
        assert np.isfinite(float(chain(imgs, labels).array))


def test_default_head_without_aux_arrays(files):
    plan = initial_weights.plan_auxiliary_head(files['plain'], 21)
    assert (plan.channels, plan.ksize, plan.path) == (512, 3, None)
    for name in ('imagenet', 'none', 'cityscapes'):
        plan = initial_weights.plan_auxiliary_head(name, 19)
        assert (plan.channels, plan.ksize, plan.path) == (512, 3, None)


def test_malformed_aux_head_in_a_file_is_one_line(files, tmp_path):
    with np.load(files['with_aux']) as npz:
        arrays = {k: npz[k] for k in npz.files if k != 'aux_conv2/b'}
    path = str(tmp_path / 'broken.npz')
    np.savez(path, **arrays)
    with pytest.raises(UserError) as error:
        initial_weights.plan_auxiliary_head(path, 21)
    assert '\n' not in str(error.value)
    assert 'incomplete or malformed auxiliary head' in str(error.value)


@pytest.mark.parametrize('case, expected', [
    (dict(aux=False), 'holds no auxiliary branch (conv4_7, conv4_7/bn, '
     'conv6_1); convert it without --with-aux'),
    (dict(omit=('conv6_1',)), 'lacks conv6_1 of the auxiliary branch'),
    (dict(blob_shapes={'conv4_7': [(512, 1024, 3, 3)]}),
     'blob 0 of layer conv4_7 has shape (512, 1024, 3, 3), but '
     'aux_conv1/conv/W of the model needs (256, 1024, 3, 3)'),
    (dict(blob_shapes={'conv6_1': [(21, 256, 1, 1)]}),
     'layer conv6_1 has no bias'),
])
def test_with_aux_user_errors_are_one_line(tmp_path, case, expected):
    source = str(tmp_path / 'model.caffemodel')
    target = str(tmp_path / 'out.npz')
    factory.write_caffemodel(source, 50, 21, 473, values='zeros', **case)
    result = run_script('caffe2npz.py', '--with-aux', source, target)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), lines
    assert expected in lines[0]
    assert sorted(os.listdir(str(tmp_path))) == ['model.caffemodel']


@pytest.mark.skipif(not os.path.isfile(MPIEXEC), reason='no mpiexec next to '
                    '{} (pip install mpich)'.format(sys.executable))
def test_fine_tuning_under_mpiexec_starts_from_every_caffe_layer(
        files, tmp_path):
    pytest.importorskip('scipy', reason='SBD labels need SciPy: pip '
                        'install -r requirements.txt')
    data = str(tmp_path / 'data')
    dataset_factory.make_voc_sbd(data, n_voc=2, n_sbd=(2, 1), size=(48, 56))
    out = str(tmp_path / 'out')
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')

    def train(*extra):
        # A learning rate of 1e-30 leaves the parameters as loaded.
        return subprocess.run(
            [MPIEXEC, '-n', '2', sys.executable,
             os.path.join(ROOT, 'train_multi.py'), '--dataset', 'voc',
             '--model', 'pspnet_resnet50', '--data-dir', data, '--out', out,
             '--crop-size', '48', '--batchsize', '1', '--iteration', '2',
             '--lr', '1e-30', '--pretrained-model', files['with_aux'],
             '--snapshot-interval', '1', '--val-interval', '0',
             '--loaderjob', '0', '--no-progress'] + list(extra),
            cwd=ROOT, env=env, timeout=600, capture_output=True, text=True)

    result = train()
    assert result.returncode == 0, result.stdout + result.stderr
    with open(os.path.join(out, 'config.json')) as f:
        assert 'auxiliary head from ' + files['with_aux'] in json.load(
            f)['initial_weights']
    with np.load(os.path.join(out, 'snapshot_iter_1.npz')) as snapshot, \
            np.load(files['with_aux']) as npz:
        prefix = 'updater/model:main/'
        params = [k for k in snapshot.files if k.startswith(prefix)
                  and not k.endswith(('/N', '/avg_mean', '/avg_var'))]
        # 61 convolutions with BN (W, gamma, beta), 2 classifiers (W, b).
        assert len(params) == 61 * 3 + 2 * 2
        for key in params:
            name = key[len(prefix):]
            name = name[len('model/'):] if name.startswith('model/') \
                else name
            # Equal but for values so small that 1e-30 x gradient shows.
            np.testing.assert_allclose(snapshot[key], npz[name], rtol=1e-6,
                                       atol=1e-20, err_msg=key)
    # Resuming rebuilds the Caffe-shaped head from the snapshot.
    os.remove(os.path.join(out, 'model_final.npz'))
    result = train('--resume', os.path.join(out, 'snapshot_iter_1.npz'))
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'resuming at iteration 1' in result.stdout
