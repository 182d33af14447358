"""MPI processes started by ``mpiexec``: detecting them, starting ChainerMN,
splitting work and summing results, and failing together. Every use of
MPI in the project goes through this module.

A process of a job that fails alone leaves the others waiting forever in
their next collective operation, so errors are either agreed on by all
processes (:func:`agree`) or end the whole job (:func:`abort_on_error`);
:func:`run_collectively` wraps a script's work in both. Functions taking
``comm`` accept None for a run without MPI.
"""

import errno
import fcntl
import multiprocessing
import os
import signal
import socket
import stat
import struct
import sys
import termios
import time
import traceback

import numpy as np

from pspnet.atomic import is_disk_full
from pspnet.errors import UserError

#: Communicators of Chainer 7.8.1's ChainerMN that need GPUs (and CuPy).
GPU_COMMUNICATORS = ('pure_nccl', 'flat', 'non_cuda_aware')
#: The communicator that works on the CPU.
CPU_COMMUNICATORS = ('naive',)
COMMUNICATORS = GPU_COMMUNICATORS + CPU_COMMUNICATORS

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


def create_communicator(name, fix=None):
    """Create a ChainerMN communicator (this initializes MPI).

    Args:
        name (str): ``'naive'`` (CPU arrays over MPI), ``'pure_nccl'``
            (one GPU per process, NCCL) or another ChainerMN communicator.
        fix (str or None): What the user can do when it cannot start, for
            scripts without a ``--communicator`` option; None names
            mpi4py, CuPy with NCCL and another communicator.

    Raises:
        UserError: ChainerMN cannot start (mpi4py, CuPy or NCCL missing).
    """
    import chainermn
    try:
        return chainermn.create_communicator(name)
    except Exception as e:  # ImportError, NCCL and MPI errors alike
        if fix is None:
            fix = ('install mpi4py (and CuPy with NCCL for GPUs, see '
                   'docs/gpu.md) or pick another communicator')
        raise UserError('cannot start the {} communicator ({}: {}); {}'
                        .format(name, type(e).__name__, e, fix))


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


#: Longest wait (seconds) for the launcher to take the error line out of
#: the pipe behind standard error before the job is aborted anyway.
DRAIN_TIMEOUT = 10.0
#: Longest wait (seconds) of a failed process that leaves the report to
#: another one for the abort of that one, before it aborts the job itself.
QUIET_TIMEOUT = 30.0
# The claim sockets of this process (bound until it ends).
_claims = []


def _unread_bytes(fd):
    """Bytes written into the pipe behind ``fd`` that its reader has not
    taken yet; None when ``fd`` is not a pipe (a file, a terminal: their
    writes are done when ``write`` returns)."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
        return struct.unpack('i', fcntl.ioctl(fd, termios.FIONREAD,
                                              b'\0' * 4))[0]
    except OSError:
        return None


def _wait_until_read(fds, timeout=DRAIN_TIMEOUT):
    """Wait until the readers of the pipes behind ``fds`` (standard output
    and error) have taken everything written into them, at most
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while any(_unread_bytes(fd) for fd in fds):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def _job_key(comm):
    """A key shared by the processes of this job (chosen by rank 0), which
    names the job's claim of the error report (:func:`_claim_report`)."""
    key = os.urandom(8).hex() if comm.rank == 0 else None
    return comm.mpi_comm.bcast(key, root=0)


def _claim_report(key):
    """True for the first process of the job on this machine to fail (it
    reports); False for the others, which stay quiet.

    The claim is an abstract Unix socket named after the job: binding it
    is atomic, and it goes when its process ends, leaving no file. Without
    abstract sockets (not Linux), every process reports.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind('\0pspnet-error-report-' + key)
    except OSError as e:
        sock.close()
        return e.errno != errno.EADDRINUSE
    _claims.append(sock)
    return True


def _ignore_interrupts():
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass


def _abort(comm, code):
    """End the whole job with MPI's abort, without the launcher's lines.

    MPICH prints one more line to standard error, which the user does not
    need after ours: standard error goes to ``/dev/null`` first. MPICH's
    ``MPI_Abort`` returns once it has told the launcher (``mpiexec`` then
    exits, and its proxies stop every process of the job); the process
    ends there rather than going on with the script.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    except OSError:
        pass
    try:
        comm.mpi_comm.Abort(code)
    finally:
        os._exit(code)


def _report_and_abort(comm, key, code, report):
    """Report an error of this process once for the job, then abort it.

    The report must reach the user before the abort ends ``mpiexec``:
    MPICH's launcher proxy reads the process's standard error (a pipe) and
    its PMI socket in one loop, PMI first, and forwards both to
    ``mpiexec``, which exits as soon as it reads the abort, dropping what
    comes after it. So the abort is only sent once the proxy has read the
    line out of the pipe (it forwards what it reads before it reads on),
    which puts the line ahead of the abort on the way to ``mpiexec``. Of
    processes failing at once (an interrupt reaches all of them) the
    first one reports; the others wait quietly for its abort.
    """
    _ignore_interrupts()
    if key is not None and not _claim_report(key):
        time.sleep(QUIET_TIMEOUT)
        _abort(comm, code)
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    report()
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    _wait_until_read((1, 2))
    _abort(comm, code)


def _error_line(rank, error):
    """The one line for an error of one process, or None for an error
    that needs its traceback (a defect of the program)."""
    if isinstance(error, UserError):
        return 'error: process {}: {}'.format(rank, error)
    if isinstance(error, KeyboardInterrupt):
        return 'process {}: interrupted'.format(rank)
    if isinstance(error, OSError):
        fix = ('free some space on its disk' if is_disk_full(error)
               else 'check the file and its folder')
        where = ' ({})'.format(error.filename) if error.filename else ''
        return 'error: process {}: {}{}; {}'.format(
            rank, error.strerror or error, where, fix)
    return None


def abort_on_error(comm, function, *args, **kwargs):
    """Run ``function``; an error on one process ends all of them.

    Any exception but a :class:`CollectiveError` ends the whole job with
    MPI's abort: one line for a :class:`UserError`, an ``OSError`` (a full
    disk, a permission) or an interrupt (status 2, or 130 when
    interrupted), a traceback for any other error, a defect (status 1).
    The line reaches the user before the job ends, and once: when several
    processes fail at once, the first one of a machine reports. Every
    process must call this function (it agrees on a key for that).
    Without other processes, exceptions pass through unchanged.
    """
    if comm is None or comm.size == 1:
        return function(*args, **kwargs)
    key = _job_key(comm)
    try:
        return function(*args, **kwargs)
    except CollectiveError:
        raise
    except (Exception, KeyboardInterrupt) as e:
        line = _error_line(comm.rank, e)
        if line is None:
            code = 1

            def report():
                traceback.print_exc()
                sys.stderr.write(
                    'process {} failed; stopping all {} processes\n'.format(
                        comm.rank, comm.size))
        else:
            code = 130 if isinstance(e, KeyboardInterrupt) else 2

            def report():
                sys.stderr.write(line + '\n')
        _report_and_abort(comm, key, code, report)


def run_collectively(comm, function, *args, **kwargs):
    """Run a script's work on every process of the job.

    A :class:`CollectiveError` (an error every process met, see
    :func:`agree`) is raised on rank 0 alone, for the script to print;
    the other processes exit with status 2 without printing. Any other
    error ends the whole job (:func:`abort_on_error`).
    """
    try:
        return abort_on_error(comm, function, *args, **kwargs)
    except CollectiveError:
        if comm is not None and comm.rank != 0:
            sys.stderr.flush()
            sys.exit(2)
        raise


def before_mpi(function, *args, **kwargs):
    """Run setup that every process of a job does alike before MPI starts
    (parsing options, checking them): a :class:`UserError` is raised on
    the launcher's rank 0 only, the other processes exit with status 2
    without printing, so the user reads the line once."""
    try:
        return function(*args, **kwargs)
    except UserError:
        if launcher_rank() != 0:
            sys.exit(2)
        raise


def shard_indices(n, comm, equal_length=False):
    """This process's share of ``range(n)``, a contiguous block.

    Args:
        n (int): Items to share out.
        comm: The communicator, or None.
        equal_length (bool): False: sizes differ by at most one and no
            index is in two shares (evaluation). True: every share has the
            same size, neighbours sharing an item or so when ``n`` does not
            divide evenly (training, where every process must run the same
            number of iterations).

    Returns:
        range: Indices for this process (all of them when ``comm`` is None).
    """
    if comm is None:
        return range(n)
    import chainermn
    begin, end = chainermn.scatter_index(n, comm,
                                         force_equal_length=equal_length)
    return range(begin, end)


def local_block(n, comm):
    """This process's contiguous share of ``range(n)`` (sizes differ by at
    most one, no index twice), computed without communicating, so it may
    be used inside :func:`agree`."""
    if comm is None:
        return range(n)
    return range(n * comm.rank // comm.size, n * (comm.rank + 1) // comm.size)


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


def allgather(comm, value):
    """Every process's ``value`` (a picklable object), in rank order
    (``[value]`` without other processes)."""
    if comm is None or comm.size == 1:
        return [value]
    return comm.mpi_comm.allgather(value)
