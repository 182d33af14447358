"""Half precision on the CPU: float16 inference against float32, ChainerMN's
batch normalization on float16 inputs, float32 master weights in files,
and train_multi.py --dtype mixed16 under mpiexec (a short run against
float32's, its float32 files, a resume that keeps the loss scale).

The CPU computes float16 convolutions with float32 accumulation
(pspnet.precision.enable_cpu_float16_gemm), as GPUs do; the speed and the
agreement on real weights are measured on a GPU (tools/gpu/gpu_check.sh,
benchmarks/bench_gpu.py)."""

import copy
import json
import os
import shutil
import subprocess
import sys

import chainer
import chainer.links as L
import numpy as np
import pytest

from pspnet import PSPNetResNet50
from pspnet import inference
from pspnet import mpi
from pspnet import precision
from pspnet import pretrained
from pspnet.training import mixed16
from tests.helpers import dataset_factory
from tests.helpers.random_weights import randomize_batch_normalization
from tests.helpers.random_weights import smooth_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
SIZE = 65
N_CLASS = 5


def _model(seed=0):
    rng = np.random.RandomState(seed)
    np.random.seed(rng.randint(2 ** 31))
    model = PSPNetResNet50(N_CLASS, input_size=SIZE)
    randomize_batch_normalization(model, rng)
    return model


def test_half_layout_keeps_batch_normalization_float32():
    model = precision.to_half(_model())
    assert model.compute_dtype == np.float16
    for name, param in model.namedparams():
        expected = np.float32 if '/bn/' in name else np.float16
        assert param.dtype == expected, name
    for name, link in model.conv_bn_links():
        assert link.bn.avg_mean.dtype == np.float32, name
        assert link.bn.avg_var.dtype == np.float32, name
    x = np.zeros((1, 3, SIZE, SIZE), np.float32)
    assert inference.unsupported_reason(model, x) is not None


@pytest.mark.parametrize('seed,shape', [(1, (50, 60)), (2, (70, 100))])
def test_float16_labels_agree_with_float32(seed, shape):
    """Canvas and sliding windows; random weights, so the agreement is
    that of a network with many near ties (real weights: on a GPU)."""
    model = _model(seed)
    img = smooth_image(np.random.RandomState(seed), shape)
    scores32 = model.predict_scores(img)
    half = precision.inference_model(copy.deepcopy(model), 'float16')
    scores16 = half.predict_scores(img)
    assert scores16.dtype == np.float32 and scores16.shape == scores32.shape
    assert np.all(np.isfinite(scores16))
    np.testing.assert_allclose(scores16.sum(axis=0), 1, atol=1e-3)
    assert np.abs(scores16 - scores32).max() < 0.05
    labels16 = half.predict([img])[0]
    agreement = np.mean(labels16 == scores32.argmax(axis=0))
    assert agreement > 0.97, agreement
    # Where float32 has a clear winner, float16 picks it.
    top2 = np.sort(scores32, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 0.05
    np.testing.assert_array_equal(labels16[clear],
                                  scores32.argmax(axis=0)[clear])


def test_unknown_inference_dtype_is_a_user_error():
    from pspnet.errors import UserError
    with pytest.raises(UserError, match='float16'):
        precision.inference_model(_model(), 'bfloat16')


@pytest.mark.parametrize('scale', [1.0, 1000.0])
def test_multi_node_bn_statistics_of_float16_inputs(scale):
    """ChainerMN alone squares float16 inputs in float16 (inf above 256)."""
    from chainermn.links import MultiNodeBatchNormalization
    mixed16.enable_multi_node_bn_float16()
    comm = mpi.create_communicator('naive')
    rng = np.random.RandomState(int(scale))
    x = (rng.randn(2, 6, 7, 9) * scale + scale / 3).astype(np.float16)
    outputs = {}
    for dtype in (np.float32, np.float16):
        bn = MultiNodeBatchNormalization(6, comm)
        y = bn(x.astype(dtype))
        assert y.dtype == dtype
        outputs[dtype] = (y.array.astype(np.float32), bn.avg_var.copy())
    np.testing.assert_allclose(outputs[np.float16][0], outputs[np.float32][0],
                               atol=2e-2)
    np.testing.assert_allclose(outputs[np.float16][1], outputs[np.float32][1],
                               rtol=2e-3)


class _Tiny(chainer.Chain):
    def __init__(self):
        super(_Tiny, self).__init__()
        with self.init_scope():
            self.conv = L.Convolution2D(3, 4, 3, pad=1)
            self.bn = L.BatchNormalization(4)


def test_master_weights_go_to_files_and_come_back(tmp_path):
    link = mixed16.to_mixed16(_Tiny())
    optimizer = chainer.optimizers.MomentumSGD(0.1)
    optimizer.setup(link)
    mixed16.setup_loss_scaling(optimizer, 'mixed16')
    rng = np.random.RandomState(0)
    for _ in range(2):
        link.cleargrads()
        for param in link.params():
            param.grad = rng.randn(*param.shape).astype(param.dtype) * 1e-3
        optimizer.update()
    master = link.conv.W.update_rule._fp32_param.array.copy()
    # The masters hold what float16 cannot.
    assert np.any(master.astype(np.float16).astype(np.float32) != master)
    arrays = mixed16.float32_arrays(link)
    assert all(a.dtype != np.float16 for a in arrays.values())
    np.testing.assert_array_equal(arrays['conv/W'], master)

    written = {}

    def writer(filename, outdir, target):
        written.update(target)
    target = {mixed16.SNAPSHOT_MODEL_PREFIX + key: value for key, value
              in chainer.serializers.npz.serialize(link).items()}
    mixed16.Float32SnapshotWriter(writer, optimizer)('s', '.', target)
    path = str(tmp_path / 'snapshot.npz')
    np.savez(path, **written)

    fresh = mixed16.to_mixed16(_Tiny())
    fresh_optimizer = chainer.optimizers.MomentumSGD(0.1)
    fresh_optimizer.setup(fresh)
    mixed16.setup_loss_scaling(fresh_optimizer, 'mixed16')
    mixed16.restore_master_weights(fresh_optimizer, path)
    np.testing.assert_array_equal(
        fresh.conv.W.update_rule._fp32_param.array, master)
    assert fresh.conv.W.dtype == np.float16
    np.testing.assert_array_equal(fresh.conv.W.array,
                                  master.astype(np.float16))


# --- train_multi.py --dtype mixed16 under mpiexec -n 1 ---------------------

N_ITER = 4


def _train(data_dir, out, dtype, *extra, initial='none'):
    command = [MPIEXEC, '-n', '1', sys.executable,
               os.path.join(ROOT, 'train_multi.py'),
               '--dataset', 'cityscapes', '--model', 'pspnet_resnet50',
               '--data-dir', data_dir, '--out', out, '--crop-size', '48',
               '--batchsize', '2', '--iteration', str(N_ITER),
               '--lr', '0.002', '--pretrained-model', initial,
               '--log-interval', '1', '--snapshot-interval', '2',
               '--val-interval', '0', '--loaderjob', '0', '--no-progress',
               '--dtype', dtype] + list(extra)
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')
    return subprocess.run(command, cwd=ROOT, env=env, timeout=900,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def _log(out):
    with open(os.path.join(out, 'log')) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    if not os.path.isfile(MPIEXEC):
        pytest.skip('no mpiexec next to {} (pip install mpich)'.format(
            sys.executable))
    data_dir = dataset_factory.make_cityscapes(
        str(tmp_path_factory.mktemp('cityscapes')), n_per_city=1,
        size=(48, 72), learnable=True, train_ids=(0, 2, 8, 10))
    # Both runs start from the same weights.
    np.random.seed(0)
    initial = str(tmp_path_factory.mktemp('initial') / 'initial.npz')
    chainer.serializers.save_npz(initial, PSPNetResNet50(19, input_size=64))
    outs = {}
    for dtype in ('float32', 'mixed16'):
        out = str(tmp_path_factory.mktemp(dtype))
        result = _train(data_dir, out, dtype, initial=initial)
        assert result.returncode == 0, result.stdout + result.stderr
        outs[dtype] = out
    return data_dir, outs


def test_mixed16_loss_follows_float32(runs):
    _, outs = runs
    log32, log16 = _log(outs['float32']), _log(outs['mixed16'])
    assert [e['iteration'] for e in log16] == list(range(1, N_ITER + 1))
    loss32 = np.array([e['main/loss'] for e in log32])
    loss16 = np.array([e['main/loss'] for e in log16])
    assert np.all(np.isfinite(loss16))
    # The same initial weights; the random crops and dropout masks of the
    # two runs differ, so only the first step is close, and the curves
    # within the noise of a short run.
    assert loss16[0] == pytest.approx(loss32[0], rel=0.05)
    assert loss16.mean() == pytest.approx(loss32.mean(), rel=0.1)
    assert loss16[-1] < loss16[0] and loss32[-1] < loss32[0]
    # No overflow in so short a run: the scale doubles every step.
    assert [e['loss_scale'] for e in log16] == [2.0, 4.0, 8.0, 16.0]
    assert 'loss_scale' not in log32[0]


def test_mixed16_files_are_float32_and_load(runs):
    _, outs = runs
    out = outs['mixed16']
    with open(os.path.join(out, 'config.json')) as f:
        assert json.load(f)['dtype'] == 'mixed16'
    with np.load(os.path.join(out, 'model_final.npz')) as f:
        dtypes = {f[key].dtype for key in f.files
                  if f[key].dtype.kind == 'f'}
        w = f['head_conv2/W']
    assert dtypes == {np.dtype(np.float32)}
    # Master weights, not float16 values widened.
    assert np.any(w.astype(np.float16).astype(np.float32) != w)
    model = PSPNetResNet50(n_class=19, input_size=64)
    pretrained.load_npz(model, os.path.join(out, 'model_final.npz'))
    label = model.predict([np.zeros((3, 64, 80), np.float32)])[0]
    assert label.shape == (64, 80)
    with np.load(os.path.join(out, 'snapshot_iter_2.npz')) as f:
        key = mixed16.SNAPSHOT_MODEL_PREFIX + 'model/head_conv2/W'
        assert f[key].dtype == np.float32
        assert float(f['extensions/LossScaleState/scale']) == 4.0


def test_mixed16_snapshot_resumes_with_its_loss_scale(runs, tmp_path):
    data_dir, outs = runs
    out = str(tmp_path / 'resumed')
    os.makedirs(out)
    for name in ('snapshot_iter_2.npz', 'config.json'):
        shutil.copy(os.path.join(outs['mixed16'], name), out)
    # Another dtype cannot continue the run.
    result = _train(data_dir, out, 'float32', '--resume')
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        'error: the run in {} used --dtype mixed16; resume with the same '
        'options, or start a new run with another --out'.format(out))
    result = _train(data_dir, out, 'mixed16', '--resume')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'resuming at iteration 2' in result.stdout
    log = _log(out)
    assert [e['iteration'] for e in log] == list(range(1, N_ITER + 1))
    assert [e['loss_scale'] for e in log[2:]] == [8.0, 16.0]
    assert np.all(np.isfinite([e['main/loss'] for e in log]))
    with np.load(os.path.join(out, 'model_final.npz')) as f:
        assert f['head_conv2/W'].dtype == np.float32


def test_tf32_on_the_cpu_is_a_noted_no_op():
    from pspnet import device
    assert device.speed_setup(None, tf32=True) == [
        '--tf32 has no effect on the CPU (it is a GPU setting)']
    assert device.speed_setup(-1) == []


@pytest.mark.skipif(__import__('pspnet.device').device.gpu_count() > 0,
                    reason='this machine has a GPU')
def test_bench_gpu_without_gpu_is_one_line():
    result = subprocess.run(
        [sys.executable, '-m', 'benchmarks.bench_gpu'], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=120)
    assert result.returncode == 1
    assert result.stdout.strip().splitlines() == [
        'bench_gpu.py: no CUDA GPU 0 here (CuPy missing or no device); '
        'nothing measured']
