"""GPU checks (CuPy): the same results on the GPU as on the CPU.

They skip where CuPy or a GPU is missing, as on CI. Run them on a GPU
machine with ``python -m pytest tests/test_gpu.py``.
"""

import copy

import chainer
import numpy as np
import pytest

from pspnet import PSPNetResNet50
from pspnet.device import gpu_count
from pspnet.device import use_gpu
from pspnet.evaluations import SemanticSegmentationConfusion
from tests.helpers.random_weights import randomize_batch_normalization
from tests.helpers.random_weights import smooth_image


pytestmark = pytest.mark.skipif(gpu_count() == 0,
                                reason='needs CuPy and a CUDA GPU')

SIZE = 65
N_CLASS = 5


def _model(seed=0):
    rng = np.random.RandomState(seed)
    np.random.seed(rng.randint(2 ** 31))  # Chainer's initializers use it
    model = PSPNetResNet50(N_CLASS, input_size=SIZE)
    randomize_batch_normalization(model, rng)
    return model


def _image(seed, shape):
    return smooth_image(np.random.RandomState(seed), shape)


def test_forward_matches_cpu():
    model = _model()
    x = _image(1, (SIZE, SIZE))[None] - model.mean
    with chainer.using_config('train', False):
        cpu = model.forward(x).array
        use_gpu(model, 0)
        gpu = model.forward(model.xp.asarray(x)).array
    assert isinstance(gpu, chainer.backends.cuda.ndarray)
    gpu = chainer.backends.cuda.to_cpu(gpu)
    scale = np.abs(cpu).max()
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize('shape', [(50, 60), (90, 140)])
def test_predict_matches_cpu(shape):
    """Canvas (50x60) and sliding-window (90x140) paths."""
    model = _model()
    img = _image(2, shape)
    cpu_scores = model.predict_scores(img)
    use_gpu(model, 0)
    gpu_scores = chainer.backends.cuda.to_cpu(model.predict_scores(img))
    np.testing.assert_allclose(gpu_scores, cpu_scores, rtol=0, atol=1e-4)
    label = model.predict([img])[0]
    assert isinstance(label, np.ndarray) and label.dtype == np.int32
    assert label.shape == shape
    top2 = np.sort(cpu_scores, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-3
    np.testing.assert_array_equal(label[clear],
                                  cpu_scores.argmax(axis=0)[clear])


def test_multiscale_on_gpu():
    model = _model()
    model.scales = (0.5, 1.0)
    img = _image(3, (40, 52))
    cpu_scores = model.predict_scores(img)
    use_gpu(model, 0)
    gpu_scores = chainer.backends.cuda.to_cpu(model.predict_scores(img))
    np.testing.assert_allclose(gpu_scores, cpu_scores, rtol=0, atol=1e-4)


def test_confusion_of_gpu_label_maps():
    import cupy
    rng = np.random.RandomState(4)
    pred = rng.randint(0, 3, (20, 30))
    gt = rng.randint(-1, 3, (20, 30))
    on_cpu = SemanticSegmentationConfusion(3)
    on_cpu.update(pred, gt)
    on_gpu = SemanticSegmentationConfusion(3)
    on_gpu.update(cupy.asarray(pred), cupy.asarray(gt))
    np.testing.assert_array_equal(
        chainer.backends.cuda.to_cpu(on_gpu.matrix), on_cpu.matrix)


def test_training_step_with_nccl_and_multi_node_bn():
    """One process of train_multi.py's GPU path: the NCCL communicator,
    multi-node BN and the multi-node optimizer update the weights on the
    GPU as the same step does on the CPU."""
    from pspnet import mpi
    from pspnet.training import replicas
    from pspnet.training.optimizer import setup_optimizer
    from pspnet.training.optimizer import synchronize_start
    from pspnet.training.train_chain import TrainChain

    rng = np.random.RandomState(5)
    x = rng.uniform(-100, 100, (2, 3, SIZE, SIZE)).astype(np.float32)
    t = rng.randint(-1, N_CLASS, (2, SIZE, SIZE)).astype(np.int32)

    initial = TrainChain(_model(), dropout_ratio=0.0)  # no random masks

    def one_step(comm, gpu):
        chain = replicas.to_multi_node_batch_normalization(
            copy.deepcopy(initial), comm)
        if gpu:
            chain.to_gpu(0)
        optimizer = setup_optimizer(chain, comm, lr=1e-3)
        synchronize_start(optimizer, comm)
        xp = chain.xp
        loss = chain(xp.asarray(x), xp.asarray(t))
        chain.cleargrads()
        loss.backward()
        optimizer.update()
        return float(loss.array), chain

    chainer.backends.cuda.get_device_from_id(0).use()
    gpu_loss, gpu_chain = one_step(
        mpi.create_communicator('pure_nccl'), True)
    cpu_loss, cpu_chain = one_step(
        mpi.create_communicator('naive'), False)
    assert np.isfinite(gpu_loss)
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-3)
    gpu_w = chainer.backends.cuda.to_cpu(
        gpu_chain.model.head_conv2.W.array)
    np.testing.assert_allclose(gpu_w, cpu_chain.model.head_conv2.W.array,
                               rtol=1e-3, atol=1e-5)


def test_float16_forward_and_labels_on_gpu():
    """float16 inference on the GPU against float32 on the GPU (random
    weights; the figure on real weights comes from tools/gpu/gpu_check.sh's
    evaluation)."""
    from pspnet import precision
    model = use_gpu(_model(), 0)
    img = _image(6, (90, 140))
    scores32 = chainer.backends.cuda.to_cpu(model.predict_scores(img))
    precision.inference_model(model, 'float16')
    assert model.compute_dtype == np.float16
    scores16 = chainer.backends.cuda.to_cpu(model.predict_scores(img))
    assert np.all(np.isfinite(scores16))
    assert np.abs(scores16 - scores32).max() < 0.05
    agreement = np.mean(scores16.argmax(0) == scores32.argmax(0))
    print('float16 vs float32 label agreement on the GPU:', agreement)
    assert agreement > 0.97


def test_mixed16_training_steps_on_gpu():
    """Three mixed16 steps of train_multi.py's GPU path: finite losses near
    float32's, float16 weights with float32 masters, a rising loss scale."""
    from pspnet import mpi
    from pspnet.training import mixed16
    from pspnet.training import replicas
    from pspnet.training.optimizer import setup_optimizer
    from pspnet.training.optimizer import synchronize_start
    from pspnet.training.train_chain import TrainChain

    rng = np.random.RandomState(7)
    x = rng.uniform(-100, 100, (2, 3, SIZE, SIZE)).astype(np.float32)
    t = rng.randint(-1, N_CLASS, (2, SIZE, SIZE)).astype(np.int32)
    initial = TrainChain(_model(), dropout_ratio=0.0)
    chainer.backends.cuda.get_device_from_id(0).use()
    comm = mpi.create_communicator('pure_nccl')
    losses = {}
    for dtype in ('float32', 'mixed16'):
        chain = copy.deepcopy(initial)
        if dtype == 'mixed16':
            mixed16.to_mixed16(chain)
        chain = replicas.to_multi_node_batch_normalization(chain, comm)
        chain.to_gpu(0)
        optimizer = setup_optimizer(chain, comm, lr=1e-3)
        mixed16.setup_loss_scaling(optimizer, dtype)
        synchronize_start(optimizer, comm)
        xs, ts = chain.xp.asarray(x), chain.xp.asarray(t)
        losses[dtype] = []
        for _ in range(3):
            optimizer.update(chain, xs, ts)
            losses[dtype].append(float(chain(xs, ts).array))
        if dtype == 'mixed16':
            assert chain.model.head_conv2.W.dtype == np.float16
            assert mixed16.float32_arrays(chain)[
                'model/head_conv2/W'].dtype == np.float32
            assert mixed16.loss_scale(optimizer) > 1
    assert np.all(np.isfinite(losses['mixed16']))
    np.testing.assert_allclose(losses['mixed16'], losses['float32'],
                               rtol=0.05)


def test_tf32_and_cudnn_description():
    from pspnet import device
    line = device.describe_gpu(0)
    assert line.startswith('GPU 0: ') and 'cuDNN' in line
    import cupy
    if int(cupy.cuda.Device(0).compute_capability) >= 80:
        assert 'on' in device.set_tf32(True)
    assert 'off' in device.set_tf32(False)
