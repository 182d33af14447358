"""GPUs or CPUs: counting GPUs, choosing the device of a process, placing
models on a GPU through Chainer's device API."""

import chainer
import numpy as np

from pspnet.errors import UserError


def gpu_count():
    """Number of CUDA GPUs CuPy sees; 0 without CuPy or a driver."""
    if not chainer.backends.cuda.available:
        return 0
    import cupy
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        return 0


def require_gpu(gpu):
    """Check that GPU ``gpu`` exists (CuPy installed and seeing it), before
    any MPI call.

    Raises:
        UserError: CuPy is missing, sees no GPU, or fewer than ``gpu + 1``.
    """
    if not chainer.backends.cuda.available or gpu_count() == 0:
        raise UserError('--gpu {} needs CuPy and a CUDA GPU, and CuPy is '
                        'not installed or sees none; install '
                        'requirements-gpu.txt (see docs/gpu.md) or drop --gpu to '
                        'run on the CPU'.format(gpu))
    n_gpu = gpu_count()
    if gpu >= n_gpu:
        raise UserError('--gpu {}: this machine has {} GPU(s); pass an id '
                        'from 0 to {}'.format(gpu, n_gpu, n_gpu - 1))


def use_gpu(link, gpu):
    """Move a link to GPU ``gpu`` and make that GPU current.

    Args:
        link (chainer.Link): The model.
        gpu (int or None): GPU id; None or a negative id keeps the CPU.

    Returns:
        chainer.Link: The same link.

    Raises:
        UserError: CuPy is missing or the GPU does not exist.
    """
    if gpu is None or gpu < 0:
        return link
    require_gpu(gpu)
    chainer.backends.cuda.get_device_from_id(gpu).use()
    link.to_gpu(gpu)
    return link


def choose_device_kind(device='auto'):
    """Decide between GPUs and CPUs, before any MPI call.

    Args:
        device (str): ``'auto'`` (GPUs when CuPy sees any), ``'gpu'`` or
            ``'cpu'``.

    Returns:
        str: ``'gpu'`` or ``'cpu'``.

    Raises:
        UserError: ``'gpu'`` was asked for but CuPy sees no GPU.
    """
    if device not in ('auto', 'gpu', 'cpu'):
        raise UserError("unknown device {!r}; use auto, gpu or cpu".format(
            device))
    if device == 'cpu':
        return 'cpu'
    if gpu_count() > 0:
        return 'gpu'
    if device == 'gpu':
        raise UserError('--device gpu needs CuPy and a CUDA GPU, and CuPy '
                        'sees none; install requirements-gpu.txt (see '
                        'docs/gpu.md) or use --device cpu')
    return 'cpu'


def process_device(kind, comm):
    """The Chainer device of this process: its machine's GPU number
    ``intra_rank``, or the CPU. GPUs are made current.

    Raises:
        UserError: A machine runs more processes than it has GPUs.
    """
    if kind == 'cpu':
        return chainer.get_device('@numpy')
    n_gpu = gpu_count()
    if comm.intra_rank >= n_gpu:
        raise UserError(
            'this machine runs {} processes but has {} GPU(s); start at '
            'most one process per GPU (mpiexec -n / the hostfile slots)'
            .format(comm.intra_size, n_gpu))
    device = chainer.get_device('@cupy:{}'.format(comm.intra_rank))
    device.use()
    # As ChainerCV's recipe: room for cuDNN's fastest convolutions (where
    # CuPy has cuDNN).
    chainer.backends.cuda.set_max_workspace_size(1024 ** 3)
    chainer.config.autotune = True
    return device


def cudnn_version():
    """The cuDNN version Chainer uses (e.g. 8907 for 8.9.7), or None when
    Chainer runs without cuDNN (no CuPy, a CuPy without cuDNN, or
    ``CHAINER_USE_CUDNN=never``)."""
    cuda = chainer.backends.cuda
    if not cuda.available or not cuda.cudnn_enabled:
        return None
    if chainer.config.use_cudnn == 'never':
        return None
    return int(cuda.cuda.cudnn.getVersion())


def _compute_types():
    import cupy
    try:
        from cupy._core import _routines_linalg
    except ImportError:  # pragma: no cover - CuPy < 10
        from cupy.core import _routines_linalg
    return cupy, _routines_linalg


#: CuPy's code of the TF32 compute type (cupy._core._routines_linalg).
_COMPUTE_TYPE_TF32 = 7


def set_tf32(enabled):
    """Let CuPy's float32 matrix products (cuBLAS, so Chainer's
    convolutions without cuDNN and its linear layers) use TF32 Tensor Cores,
    as ``CUPY_TF32=1`` does, or forbid it.

    TF32 multiplies with 10-bit mantissas and accumulates in float32; GPUs
    from compute capability 8.0 (Ampere) have it. cuDNN 8 already uses TF32
    for float32 convolutions on those GPUs unless ``NVIDIA_TF32_OVERRIDE=0``
    is set in the environment (which also stops this setting).

    Args:
        enabled (bool): Allow TF32 (True) or use full float32 (False).

    Returns:
        str: One line saying what is in effect.

    Raises:
        UserError: TF32 asked for on a GPU without it.
    """
    cupy, linalg = _compute_types()
    capability = int(cupy.cuda.Device().compute_capability)
    if enabled and capability < 80:
        raise UserError('--tf32 needs a GPU of compute capability 8.0 or '
                        'newer (Ampere); this one has {}.{}; drop --tf32'
                        .format(capability // 10, capability % 10))
    default = getattr(linalg, 'COMPUTE_TYPE_DEFAULT', 1)
    tf32 = getattr(linalg, 'COMPUTE_TYPE_TF32', _COMPUTE_TYPE_TF32)
    linalg.set_compute_type(np.float32, tf32 if enabled else default)
    if enabled:
        return 'TF32: on for float32 matrix products (cuBLAS)'
    return 'TF32: off for cuBLAS float32 matrix products'


def describe_gpu(gpu):
    """One line naming the GPU and what runs on it: CuPy and CUDA versions,
    cuDNN on (its version) or off (Chainer's own kernels).

    Args:
        gpu (int): The GPU id.
    """
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(gpu)
    name = props['name']
    if isinstance(name, bytes):
        name = name.decode()
    runtime = cupy.cuda.runtime.runtimeGetVersion()
    version = cudnn_version()
    if version is None:
        cudnn = 'cuDNN off (Chainer\'s own CUDA kernels)'
    else:
        cudnn = 'cuDNN {}.{}.{} on'.format(
            version // 1000, version % 1000 // 100, version % 100)
    return 'GPU {}: {}, CuPy {}, CUDA runtime {}.{}, {}'.format(
        gpu, name, cupy.__version__, runtime // 1000, runtime % 1000 // 10,
        cudnn)


def speed_setup(gpu, tf32=False):
    """Set TF32 for GPU ``gpu`` and say what runs there.

    Args:
        gpu (int or None): GPU id, already made current; None or a negative
            id for the CPU.
        tf32 (bool): ``--tf32``.

    Returns:
        list of str: Lines to print at start (none on the CPU without
        ``--tf32``).
    """
    if gpu is None or gpu < 0:
        return ['--tf32 has no effect on the CPU (it is a GPU setting)'] \
            if tf32 else []
    lines = [describe_gpu(gpu)]
    if tf32:
        lines.append(set_tf32(True))
    return lines
