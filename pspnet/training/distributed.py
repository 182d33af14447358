"""Processes, devices and communicators of data-parallel training.

One code path for both cases: with GPUs, every process drives the GPU of
its rank on its machine (``intra_rank``) and gradients travel through NCCL;
without GPUs, every process computes on the CPU and MPI carries the data.
"""

import hashlib
import multiprocessing
import os
import sys
import traceback

import chainer
import numpy as np

from pspnet.device import gpu_count
from pspnet.device import quiet_missing_cudnn_warning
from pspnet.errors import UserError

#: Communicators of Chainer 7.8.1's ChainerMN that need GPUs (and CuPy).
GPU_COMMUNICATORS = ('pure_nccl', 'flat', 'non_cuda_aware')
#: The communicator that works on the CPU.
CPU_COMMUNICATORS = ('naive',)
COMMUNICATORS = GPU_COMMUNICATORS + CPU_COMMUNICATORS


# Rank variables of MPICH/Intel MPI (PMI), Open MPI and MVAPICH.
_RANK_VARIABLES = ('PMI_RANK', 'OMPI_COMM_WORLD_RANK', 'MV2_COMM_WORLD_RANK')


def launcher_rank():
    """This process's rank as the MPI launcher tells it, before MPI starts
    (0 when not launched by ``mpiexec``)."""
    for name in _RANK_VARIABLES:
        try:
            return int(os.environ[name])
        except (KeyError, ValueError):
            pass
    return 0


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


def create_communicator(name):
    """Create the ChainerMN communicator (this initializes MPI)."""
    import chainermn
    try:
        return chainermn.create_communicator(name)
    except Exception as e:  # ImportError, NCCL and MPI errors alike
        raise UserError(
            'cannot start the {} communicator ({}: {}); install mpi4py (and '
            'CuPy with NCCL for GPUs, see README) or pick another '
            '--communicator'.format(name, type(e).__name__, e))


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
    quiet_missing_cudnn_warning()
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


class CollectiveError(UserError):
    """A :class:`UserError` every process raises at the same point."""


def agree(comm, function, *args, **kwargs):
    """Run ``function`` on every process and fail together.

    When a :class:`UserError` happens on some processes, rank 0 raises it
    as a :class:`CollectiveError` (the first one, naming the process when
    it is not rank 0) and the other processes exit with status 2 without
    printing, so the user reads one line and no process waits forever for
    the others. ``function`` must not communicate.
    """
    error = None
    try:
        result = function(*args, **kwargs)
    except UserError as e:
        error, result = str(e), None
    errors = comm.mpi_comm.allgather(error) if comm.size > 1 else [error]
    failed = [(rank, e) for rank, e in enumerate(errors) if e is not None]
    if not failed:
        return result
    if comm.rank == 0:
        rank, message = failed[0]
        if rank != 0:
            message = 'process {}: {}'.format(rank, message)
        raise CollectiveError(message)
    sys.stderr.flush()
    sys.exit(2)


def abort_on_error(comm, function, *args, **kwargs):
    """Run ``function``; an error on one process ends all of them.

    A process that fails alone would leave the others waiting in the
    next collective operation. So any exception but a
    :class:`CollectiveError` is printed (one line for a
    :class:`UserError`, a traceback otherwise) and MPI is aborted with
    status 2 (user errors) or 1.
    """
    if comm.size == 1:
        return function(*args, **kwargs)
    try:
        return function(*args, **kwargs)
    except CollectiveError:
        raise
    except (Exception, KeyboardInterrupt) as e:
        if isinstance(e, UserError):
            sys.stderr.write('error: process {}: {}\n'.format(comm.rank, e))
            code = 2
        else:
            traceback.print_exc()
            sys.stderr.write('process {} failed; stopping all {} processes\n'
                             .format(comm.rank, comm.size))
            code = 1
        sys.stderr.flush()
        comm.mpi_comm.Abort(code)


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
