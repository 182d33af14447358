"""Splitting an evaluation over MPI processes with ChainerMN.

A process started by ``mpiexec -n N`` (N > 1) evaluates a share of the
images; the confusion matrices are then summed over the processes. A
plain ``python`` run never initializes MPI.
"""

import numpy as np


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
