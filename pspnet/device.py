"""GPUs or CPUs: counting GPUs, choosing the device of a process, placing
models on a GPU through Chainer's device API."""

import chainer

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
                        'requirements-gpu.txt (see README) or drop --gpu to '
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
                        'README) or use --device cpu')
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
