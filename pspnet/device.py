"""Placing models and arrays on a GPU through Chainer's device API."""

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
    if not chainer.backends.cuda.available:
        raise UserError('--gpu {} needs CuPy, which is not installed or '
                        'finds no CUDA; install requirements-gpu.txt (see '
                        'README) or drop --gpu'.format(gpu))
    n_gpu = gpu_count()
    if gpu >= n_gpu:
        raise UserError('--gpu {}: this machine has {} GPU(s); pass an id '
                        'from 0 to {}'.format(gpu, n_gpu, n_gpu - 1))
    chainer.backends.cuda.get_device_from_id(gpu).use()
    link.to_gpu(gpu)
    return link
