"""Numerical precision of the network: float32, float16 inference and
Chainer's mixed16 training.

The half-precision layout is Chainer's ``mixed16`` one: the weights and
biases of the convolutions are float16, batch normalization keeps float32
``gamma``, ``beta``, ``avg_mean`` and ``avg_var`` (Chainer's
``BatchNormalization`` and ChainerMN's multi-node one take float16 inputs
with float32 parameters and compute their statistics in float32). The
network casts its input to float16 and its logits back to float32, so
softmax, the loss and everything after them stay float32.

Training in ``mixed16`` (:func:`setup_optimizer`) keeps a float32 master
copy of every float16 parameter in its update rule (Chainer's
``use_fp32_update``), which the updates change; the float16 weights are
copies of them. The loss is scaled dynamically (Chainer's
``loss_scaling``): doubled after each step without overflow until the
first overflow, then halved at each overflow (the step is skipped) and
raised by 2 ** (1 / interval) per step. Snapshots and ``model_final.npz``
hold the float32 master weights (:class:`Float32SnapshotWriter`,
:func:`float32_arrays`), so files of mixed16 runs are the files of float32
runs; the loss scale travels in the snapshot (:class:`LossScaleState`).
"""

import chainer
import chainer.functions as F
import numpy as np
from chainer.training import extension

from pspnet.errors import UserError

#: ``--dtype`` of the inference scripts.
INFERENCE_DTYPES = ('float32', 'float16')
#: ``--dtype`` of ``train_multi.py``.
TRAINING_DTYPES = ('float32', 'mixed16')

#: Iterations after which a dynamic loss scale has doubled again (Chainer's
#: default).
LOSS_SCALING_INTERVAL = 1000

_BN_TYPES = (chainer.links.BatchNormalization,)


def _is_batch_normalization(link):
    if isinstance(link, _BN_TYPES):
        return True
    try:
        from chainermn.links import MultiNodeBatchNormalization
    except ImportError:  # pragma: no cover - chainermn ships with chainer
        return False
    return isinstance(link, MultiNodeBatchNormalization)


class _Float32GemmNumpy(object):
    """numpy, except that ``tensordot`` of two float16 arrays multiplies in
    float32 (the result is float32; Chainer's convolutions cast it to
    float16)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def tensordot(a, b, axes=2):
        if a.dtype == np.float16 and b.dtype == np.float16:
            return np.tensordot(a.astype(np.float32), b.astype(np.float32),
                                axes)
        return np.tensordot(a, b, axes)


def enable_cpu_float16_gemm():
    """Make Chainer's CPU convolutions of float16 arrays fast.

    NumPy has no float16 matrix product (it loops in C, some hundred times
    slower than float32's BLAS), so Chainer's float16 convolutions on the
    CPU, forward and backward, would take minutes for a tiny PSPNet. After
    this call their matrix products take the float16 operands in float32
    (BLAS) and round the result to float16: float16 storage with float32
    accumulation, as GPUs compute float16 convolutions. Float32 arrays are
    not affected. Idempotent; called by :func:`to_half`.
    """
    from chainer.functions.connection import convolution_2d
    from chainer.functions.connection import deconvolution_2d
    for module in (convolution_2d, deconvolution_2d):
        if not isinstance(module.numpy, _Float32GemmNumpy):
            module.numpy = _Float32GemmNumpy()


def enable_multi_node_bn_float16():
    """Make ChainerMN's multi-node batch normalization correct for float16
    inputs.

    ChainerMN 7.8.1 squares the input in its own dtype before averaging
    (``xp.square(x).mean(dtype=gamma.dtype)``); in float16 every activation
    above 256 squares to infinity, and the loss of a mixed16 run is NaN from
    the first step. The statistics of
    :func:`pspnet.training.replicas.enable_stable_multi_node_statistics`
    cast a float16 input to the float32 of ``gamma`` first, as Chainer's own
    batch normalization does. Float32 inputs are not affected by the cast.
    Idempotent; called by :func:`to_half`.
    """
    from pspnet.training import replicas
    replicas.enable_stable_multi_node_statistics()


def to_half(link):
    """Convert a link in place to the mixed16 layout.

    Every parameter of every link but the batch normalizations becomes
    float16; batch normalizations keep their float32 parameters and
    running statistics. The link may be on the CPU or a GPU. Also makes
    Chainer's float16 convolutions usable on the CPU
    (:func:`enable_cpu_float16_gemm`) and ChainerMN's batch normalization
    correct in float16 (:func:`enable_multi_node_bn_float16`).

    Args:
        link (chainer.Link): A PSPNet, or a chain holding one.

    Returns:
        chainer.Link: The same link.
    """
    enable_cpu_float16_gemm()
    enable_multi_node_bn_float16()
    for sublink in link.links():
        if _is_batch_normalization(sublink):
            continue
        for name in sublink._params:
            param = getattr(sublink, name)
            if param.array is not None and param.dtype != np.float16:
                param.array = param.array.astype(np.float16)
                param.grad = None
    return link


def compute_dtype(link):
    """The dtype the convolutions of a link compute in: that of its first
    convolution weight (numpy.float32 or numpy.float16)."""
    for sublink in link.links():
        if isinstance(sublink, chainer.links.Convolution2D) and \
                sublink.W.array is not None:
            return sublink.W.dtype
    return np.dtype(np.float32)


def cast(x, dtype):
    """``x`` (a Variable or an array) cast to ``dtype``, or ``x`` itself
    when it has that dtype already."""
    if x.dtype == dtype:
        return x
    return F.cast(x, dtype)


def resize_images(x, size):
    """``F.resize_images`` (bilinear) for float32 and float16 inputs.

    Chainer's kernel takes float32 only; a float16 ``x`` is resized in
    float32 and cast back.

    Args:
        x: (B, C, h, w) float32 or float16.
        size (tuple of ints): (H, W).

    Returns:
        chainer.Variable: (B, C, H, W) of ``x``'s dtype.
    """
    if x.dtype == np.float32:
        return F.resize_images(x, size)
    return F.cast(F.resize_images(F.cast(x, np.float32), size), x.dtype)


def inference_model(model, dtype):
    """Set a loaded model up for inference in ``dtype``.

    Args:
        model (pspnet.PSPNet): The model, float32 weights loaded (on the CPU
            or a GPU).
        dtype (str): ``'float32'`` (nothing changes) or ``'float16'`` (the
            mixed16 layout, :func:`to_half`; on the CPU this runs Chainer's
            functions, slower than the fast path, which is float32 only).

    Returns:
        pspnet.PSPNet: The same model.

    Raises:
        UserError: An unknown dtype.
    """
    if dtype not in INFERENCE_DTYPES:
        raise UserError('unknown --dtype {!r}; use {}'.format(
            dtype, ' or '.join(INFERENCE_DTYPES)))
    if dtype == 'float16':
        to_half(model)
    return model


def describe_inference(model, dtype):
    """One line saying in which precision inference runs, or None for
    float32 (nothing to say)."""
    if dtype == 'float32':
        return None
    if model.xp is np:
        return ('--dtype float16 on the CPU: Chainer\'s functions in '
                'float16, slower than the float32 fast path (float16 is '
                'meant for GPUs)')
    return ('--dtype float16: float16 convolutions, float32 batch '
            'normalization and softmax')


def check_training_dtype(dtype):
    """Raise UserError unless ``dtype`` is one of :data:`TRAINING_DTYPES`."""
    if dtype not in TRAINING_DTYPES:
        raise UserError('unknown --dtype {!r}; use {}'.format(
            dtype, ' or '.join(TRAINING_DTYPES)))


def setup_optimizer(optimizer, dtype, interval=LOSS_SCALING_INTERVAL):
    """Float32 master weights and dynamic loss scaling for a mixed16 run.

    Args:
        optimizer: The (multi-node) optimizer, set up on its target.
        dtype (str): ``'float32'`` (nothing changes) or ``'mixed16'``.
        interval (int): Steps without overflow per doubling of the loss
            scale, after the first overflow.
    """
    check_training_dtype(dtype)
    if dtype == 'mixed16':
        optimizer.use_fp32_update()
        optimizer.loss_scaling(interval=interval)


def _master(param):
    """The float32 master copy of a float16 parameter, else None."""
    rule = getattr(param, 'update_rule', None)
    master = getattr(rule, '_fp32_param', None)
    if master is None or master.array is None:
        return None
    return master.array


def float32_arrays(link, prefix=''):
    """What ``save_npz(link)`` writes, in float32: the master copies in
    place of float16 parameters that have one, other float16 arrays cast.

    Args:
        link (chainer.Link): The link (on any device).
        prefix (str): Prepended to every key (as a trainer snapshot nests
            the model, ``'updater/model:main/'``).

    Returns:
        dict: npz key to numpy array.
    """
    serializer = chainer.serializers.DictionarySerializer()
    serializer.save(link)
    arrays = {}
    for key, value in serializer.target.items():
        value = chainer.backends.cuda.to_cpu(value)
        if isinstance(value, np.ndarray) and value.dtype == np.float16:
            value = value.astype(np.float32)
        arrays[prefix + key] = value
    for name, param in link.namedparams():
        master = _master(param)
        if master is not None:
            arrays[prefix + name.lstrip('/')] = np.array(
                chainer.backends.cuda.to_cpu(master), dtype=np.float32)
    return arrays


#: Where a trainer snapshot keeps the model of the main optimizer.
SNAPSHOT_MODEL_PREFIX = 'updater/model:main/'


class Float32SnapshotWriter(object):
    """A snapshot writer that stores the float32 master weights.

    Wraps the writer of ``chainer.training.extensions.snapshot``: in the
    serialized trainer it receives, the model's float16 parameters are
    replaced by their float32 master copies (the update rules' state, the
    momentum, is float32 already).

    Args:
        writer: The writer to pass the arrays on to.
        optimizer: The main optimizer of the trainer.
    """

    def __init__(self, writer, optimizer):
        self._writer = writer
        self._optimizer = optimizer

    def __call__(self, filename, outdir, target):
        if isinstance(target, dict):
            target = dict(target)
            target.update(float32_arrays(self._optimizer.target,
                                         SNAPSHOT_MODEL_PREFIX))
        return self._writer(filename, outdir, target)

    def __getattr__(self, name):
        return getattr(self._writer, name)


def restore_master_weights(optimizer, path):
    """After loading a float32 snapshot into a mixed16 trainer, make its
    float32 weights the master copies (the float16 parameters got them
    rounded).

    Args:
        optimizer: The main optimizer (mixed16, :func:`setup_optimizer`).
        path (str): The snapshot.
    """
    with np.load(path, allow_pickle=False) as f:
        for name, param in optimizer.target.namedparams():
            key = SNAPSHOT_MODEL_PREFIX + name.lstrip('/')
            if param.array is None or param.dtype != np.float16 or \
                    key not in f.files:
                continue
            saved = f[key].astype(np.float32)
            device = param.device
            master = chainer.Parameter(device.send(saved), name=param.name)
            param.update_rule._fp32_param = master
            param.array = device.send(saved.astype(np.float16))


class LossScaleState(extension.Extension):
    """Carries the dynamic loss scale of a mixed16 run in its snapshots
    (Chainer's optimizer does not serialize it).

    Extend every process's trainer with it; it reports ``loss_scale`` at
    every iteration (in the log), and a snapshot holds ``extensions/LossScaleState/scale``
    and ``.../overflowed``.

    Args:
        optimizer: The main optimizer (:func:`setup_optimizer` with
            mixed16).
    """

    trigger = (1, 'iteration')
    name = 'LossScaleState'
    # Before the log reads the observation.
    priority = extension.PRIORITY_WRITER

    def __init__(self, optimizer):
        self._optimizer = optimizer

    def __call__(self, trainer):
        chainer.report({'loss_scale': loss_scale(self._optimizer)})

    def serialize(self, serializer):
        actual = getattr(self._optimizer, 'actual_optimizer', self._optimizer)
        actual._loss_scale = float(serializer('scale', actual._loss_scale))
        actual._loss_scaling_isnan_ever = bool(serializer(
            'overflowed', bool(actual._loss_scaling_isnan_ever)))


def loss_scale(optimizer):
    """The current loss scale of an optimizer (None without scaling)."""
    return getattr(optimizer, '_loss_scale', None)


def add_inference_arguments(parser):
    """``--dtype float32|float16`` and ``--tf32`` of the inference scripts
    (demo.py, eval_semantic_segmentation.py)."""
    parser.add_argument('--dtype', choices=INFERENCE_DTYPES,
                        default='float32',
                        help='float32 (default) or float16: float16 '
                        'convolutions, float32 batch normalization and '
                        'softmax (for GPUs; slow on the CPU)')
    parser.add_argument('--tf32', action='store_true',
                        help='let cuBLAS use TF32 for float32 matrix '
                        'products (GPUs of compute capability 8.0+)')


def setup_inference(model, dtype='float32', tf32=False, gpu=-1):
    """Apply ``--dtype`` and ``--tf32`` to a model already on its device.

    Args:
        model (pspnet.PSPNet): The model, float32 weights loaded.
        dtype (str): ``'float32'`` or ``'float16'``.
        tf32 (bool): Allow TF32 on the GPU.
        gpu (int or None): The model's GPU; None or negative for the CPU.

    Returns:
        list of str: Lines for the start of the output: the GPU and
        whether cuDNN runs (with a GPU), TF32 and float16 notes.

    Raises:
        UserError: Unknown dtype, TF32 on a GPU without it.
    """
    from pspnet import device
    lines = device.speed_setup(gpu, tf32)
    inference_model(model, dtype)
    note = describe_inference(model, dtype)
    return lines + ([note] if note else [])
