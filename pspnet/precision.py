"""Numerical precision of the network: float32 and float16 inference, and
the half-precision layout that mixed16 training shares.

The half-precision layout is Chainer's ``mixed16`` one: the weights and
biases of the convolutions are float16, batch normalization keeps float32
``gamma``, ``beta``, ``avg_mean`` and ``avg_var`` (Chainer's
``BatchNormalization`` and ChainerMN's multi-node one take float16 inputs
with float32 parameters and compute their statistics in float32). The
network casts its input to float16 and its logits back to float32, so
softmax, the loss and everything after them stay float32. Training in
that layout (master weights, loss scaling, the files it writes) is
:mod:`pspnet.training.mixed16`.
"""

import chainer
import chainer.functions as F
import numpy as np

from pspnet import device
from pspnet.errors import UserError

#: ``--dtype`` of the inference scripts.
INFERENCE_DTYPES = ('float32', 'float16')
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


def to_half(link):
    """Convert a link in place to the mixed16 layout.

    Every parameter of every link but the batch normalizations becomes
    float16; batch normalizations keep their float32 parameters and
    running statistics. The link may be on the CPU or a GPU. Also makes
    Chainer's float16 convolutions usable on the CPU
    (:func:`enable_cpu_float16_gemm`). Training converts with
    :func:`pspnet.training.mixed16.to_mixed16`, which also makes ChainerMN's
    batch normalization correct in float16.

    Args:
        link (chainer.Link): A PSPNet, or a chain holding one.

    Returns:
        chainer.Link: The same link.
    """
    enable_cpu_float16_gemm()
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
    lines = device.speed_setup(gpu, tf32)
    inference_model(model, dtype)
    note = describe_inference(model, dtype)
    return lines + ([note] if note else [])
