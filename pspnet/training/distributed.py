"""Processes, devices and communicators of data-parallel training.

One code path for both cases: with GPUs, every process drives the GPU of
its rank on its machine (``intra_rank``) and gradients travel through NCCL;
without GPUs, every process computes on the CPU and MPI carries the data.
"""

import hashlib
import multiprocessing
import os

import chainer
import numpy as np

from pspnet.device import gpu_count
from pspnet.errors import UserError

#: Communicators of Chainer 7.8.1's ChainerMN that need GPUs (and CuPy).
GPU_COMMUNICATORS = ('pure_nccl', 'flat', 'non_cuda_aware')
#: The communicator that works on the CPU.
CPU_COMMUNICATORS = ('naive',)
COMMUNICATORS = GPU_COMMUNICATORS + CPU_COMMUNICATORS


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


def choose_communicator(kind, name=None):
    """The ChainerMN communicator name for a device kind.

    Args:
        kind (str): ``'gpu'`` or ``'cpu'``.
        name (str or None): The asked communicator; None picks
            ``pure_nccl`` on GPUs and ``naive`` on CPUs.

    Raises:
        UserError: A GPU communicator on CPUs, or an unknown name.
    """
    if name is None:
        return 'pure_nccl' if kind == 'gpu' else 'naive'
    if name not in COMMUNICATORS:
        raise UserError('unknown communicator {!r}; use one of {}'.format(
            name, ', '.join(COMMUNICATORS)))
    if kind == 'cpu' and name not in CPU_COMMUNICATORS:
        raise UserError('the {} communicator needs GPUs; on CPU processes '
                        'use --communicator naive (or leave it out)'
                        .format(name))
    return name


def start_loader_processes_safely():
    """Make loader processes start from a fork server begun before MPI.

    Forking a process that has initialized MPI can hang or crash (the
    ChainerMN FAQ on MultiprocessIterator); a fork server started before
    MPI starts clean processes instead. Call this before the communicator
    is created.
    """
    if multiprocessing.get_start_method(allow_none=True) != 'forkserver':
        multiprocessing.set_start_method('forkserver', force=True)
    process = multiprocessing.Process()
    process.start()
    process.join()


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


def to_multi_node_batch_normalization(link, comm):
    """A copy of a link whose BatchNormalizations are ChainerMN's
    MultiNodeBatchNormalization, which normalizes with the statistics of the
    whole batch over all processes.

    The copies keep the learned ``gamma`` and ``beta``, the running
    ``avg_mean`` and ``avg_var`` and the count ``N`` under the same names,
    so the copy saves the same npz keys as the original.
    """
    from chainermn.links import create_mnbn_model
    experimental_warning = chainer.disable_experimental_feature_warning
    chainer.disable_experimental_feature_warning = True
    try:
        return create_mnbn_model(link, comm)
    finally:
        chainer.disable_experimental_feature_warning = experimental_warning


def state_digests(link):
    """SHA-1 of every array ``save_npz`` would write for a link.

    Returns:
        dict: npz key to hex digest, for parameters and persistent values.
    """
    target = chainer.serializers.DictionarySerializer()
    target.save(link)
    digests = {}
    for key, value in sorted(target.target.items()):
        array = np.ascontiguousarray(chainer.backends.cuda.to_cpu(value))
        digests[key] = hashlib.sha1(array.tobytes()).hexdigest()
    return digests


def compare_replicas(comm, link):
    """Compare a link's arrays across processes.

    Returns (on rank 0; None elsewhere):
        dict: ``n_processes``, ``params_identical``,
        ``persistents_identical`` (BN running statistics and counts) and
        ``differing``, the npz keys that differ on some process.
    """
    digests = state_digests(link)
    gathered = comm.gather_obj(digests) if comm.size > 1 else [digests]
    if comm.rank != 0:
        return None
    param_keys = {name.lstrip('/') for name, _ in link.namedparams()}
    differing = sorted(key for key in digests
                       if any(d.get(key) != digests[key] for d in gathered))
    return {
        'n_processes': comm.size,
        'params_identical': not any(k in param_keys for k in differing),
        'persistents_identical': not any(k not in param_keys
                                         for k in differing),
        'differing': differing,
    }


def cpu_count():
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
