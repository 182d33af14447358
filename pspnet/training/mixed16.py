"""Training in Chainer's ``mixed16`` layout (``train_multi.py --dtype
mixed16``).

The network is in the half-precision layout of :mod:`pspnet.precision`
(float16 convolutions, float32 batch normalization). The optimizer keeps a
float32 master copy of every float16 parameter in its update rule
(Chainer's ``use_fp32_update``), which the updates change; the float16
weights are copies of them. The loss is scaled dynamically (Chainer's
``loss_scaling``): doubled after each step without overflow until the
first overflow, then halved at each overflow (the step is skipped) and
raised by 2 ** (1 / interval) per step. Snapshots and ``model_final.npz``
hold the float32 master weights (:class:`Float32SnapshotWriter`,
:func:`float32_arrays`), so files of mixed16 runs are the files of float32
runs; the loss scale travels in the snapshot (:class:`LossScaleState`).
"""

import chainer
import numpy as np
from chainer.training import extension

from pspnet import precision
from pspnet.errors import UserError
from pspnet.training import replicas

#: ``--dtype`` of ``train_multi.py``.
TRAINING_DTYPES = ('float32', 'mixed16')

#: Iterations after which a dynamic loss scale has doubled again (Chainer's
#: default).
LOSS_SCALING_INTERVAL = 1000


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
    Idempotent; called by :func:`to_mixed16`.
    """
    replicas.enable_stable_multi_node_statistics()


def to_mixed16(link):
    """Convert a training link in place to the half-precision layout
    (:func:`pspnet.precision.to_half`), with ChainerMN's batch
    normalization made correct in float16
    (:func:`enable_multi_node_bn_float16`).

    Returns:
        chainer.Link: The same link.
    """
    enable_multi_node_bn_float16()
    return precision.to_half(link)


def check_training_dtype(dtype):
    """Raise UserError unless ``dtype`` is one of :data:`TRAINING_DTYPES`."""
    if dtype not in TRAINING_DTYPES:
        raise UserError('unknown --dtype {!r}; use {}'.format(
            dtype, ' or '.join(TRAINING_DTYPES)))


def setup_loss_scaling(optimizer, dtype, interval=LOSS_SCALING_INTERVAL):
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
        optimizer: The main optimizer (mixed16, :func:`setup_loss_scaling`).
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
        optimizer: The main optimizer (:func:`setup_loss_scaling`
            with mixed16).
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
