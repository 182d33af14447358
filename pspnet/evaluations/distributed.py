"""Splitting an evaluation over MPI processes with ChainerMN.

A process started by ``mpiexec -n N`` (N > 1) evaluates a share of the
images; the confusion matrices are then summed over the processes. A
plain ``python`` run never initializes MPI.
"""

import os

import numpy as np

from pspnet.errors import UserError

# World size variables set by MPICH / Intel MPI (PMI), Open MPI, MVAPICH.
_WORLD_SIZE_VARIABLES = ('PMI_SIZE', 'OMPI_COMM_WORLD_SIZE',
                         'MV2_COMM_WORLD_SIZE')


def launched_by_mpi():
    """True when this process is one of several started by ``mpiexec``."""
    for name in _WORLD_SIZE_VARIABLES:
        try:
            if int(os.environ.get(name, '1')) > 1:
                return True
        except ValueError:
            pass
    return False


def create_communicator(use_gpu):
    """A ChainerMN communicator: ``'pure_nccl'`` (one GPU per process) when
    ``use_gpu``, else ``'naive'`` (MPI on CPU arrays).

    Raises:
        UserError: ChainerMN cannot start (mpi4py, CuPy or NCCL missing).
    """
    try:
        import chainermn
        return chainermn.create_communicator(
            'pure_nccl' if use_gpu else 'naive')
    except Exception as e:  # ChainerMN raises several kinds
        raise UserError('cannot start ChainerMN ({}: {}); install mpi4py '
                        '(and CuPy with NCCL for --gpu) or run without '
                        'mpiexec'.format(type(e).__name__, e))


def shard_indices(n, comm):
    """This process's share of ``range(n)``: a contiguous block, sizes
    differing by at most one, no index in two shares.

    Returns:
        range: Indices for this process (all of them when ``comm`` is None).
    """
    if comm is None:
        return range(n)
    import chainermn
    begin, end = chainermn.scatter_index(n, comm, force_equal_length=False)
    return range(begin, end)


def sum_over_processes(array, comm):
    """Element-wise sum of an int64 numpy array over all processes.

    Returns:
        numpy.ndarray: The sum (``array`` itself when ``comm`` is None).
    """
    if comm is None:
        return array
    from mpi4py import MPI
    array = np.ascontiguousarray(array, dtype=np.int64)
    total = np.empty_like(array)
    comm.mpi_comm.Allreduce(array, total, op=MPI.SUM)
    return total


def call_on_all(comm, function):
    """Call ``function()`` in every process; if it raises a
    :class:`UserError` in any of them, raise the first such error in all.

    Used for the setup steps before any collective operation, so that
    every process leaves together instead of some waiting forever.

    Returns:
        What ``function`` returned in this process.
    """
    try:
        result, message = function(), None
    except UserError as e:
        if comm is None:
            raise
        result, message = None, str(e)
    if comm is not None:
        messages = [m for m in comm.mpi_comm.allgather(message)
                    if m is not None]
        if messages:
            raise UserError(messages[0])
    return result


def abort(comm, status):
    """End every process of the job (one process failing alone would leave
    the others waiting forever in a collective)."""
    if comm is not None and comm.size > 1:
        comm.mpi_comm.Abort(status)
