"""MPI processes started by ``mpiexec``: detecting them, starting ChainerMN,
and failing together.

A process of a job that fails alone leaves the others waiting forever in
their next collective operation, so errors are either agreed on by all
processes (:func:`agree`) or end the whole job (:func:`abort_on_error`).
Functions taking ``comm`` accept None for a run without MPI.
"""

import os
import sys
import traceback

from pspnet.errors import UserError

# Variables the launchers set: MPICH / Intel MPI (PMI), Open MPI, MVAPICH.
_WORLD_SIZE_VARIABLES = ('PMI_SIZE', 'OMPI_COMM_WORLD_SIZE',
                         'MV2_COMM_WORLD_SIZE')
_RANK_VARIABLES = ('PMI_RANK', 'OMPI_COMM_WORLD_RANK', 'MV2_COMM_WORLD_RANK')


def _launcher_variable(names, default):
    for name in names:
        try:
            return int(os.environ[name])
        except (KeyError, ValueError):
            pass
    return default


def launched_by_mpi():
    """True when this process is one of several started by ``mpiexec``."""
    return _launcher_variable(_WORLD_SIZE_VARIABLES, 1) > 1


def launcher_rank():
    """This process's rank as the MPI launcher tells it, before MPI starts
    (0 when not launched by ``mpiexec``)."""
    return _launcher_variable(_RANK_VARIABLES, 0)


def create_communicator(name):
    """Create a ChainerMN communicator (this initializes MPI).

    Args:
        name (str): ``'naive'`` (CPU arrays over MPI), ``'pure_nccl'``
            (one GPU per process, NCCL) or another ChainerMN communicator.

    Raises:
        UserError: ChainerMN cannot start (mpi4py, CuPy or NCCL missing).
    """
    import chainermn
    try:
        return chainermn.create_communicator(name)
    except Exception as e:  # ImportError, NCCL and MPI errors alike
        raise UserError(
            'cannot start the {} communicator ({}: {}); install mpi4py (and '
            'CuPy with NCCL for GPUs, see README) or pick another '
            'communicator'.format(name, type(e).__name__, e))


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
        if comm is None:
            raise
        error, result = str(e), None
    if comm is None:
        return result
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

    Any exception but a :class:`CollectiveError` is printed (one line for
    a :class:`UserError`, a traceback otherwise) and MPI is aborted with
    status 2 (user errors) or 1. Without other processes, exceptions pass
    through unchanged.
    """
    if comm is None or comm.size == 1:
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
