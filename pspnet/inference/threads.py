"""Memory-bound array work split across threads.

numpy releases the GIL in copies and ufunc loops on large arrays, so the
work between GEMMs (unfolding, ReLU, residual additions, pooling) can run
on as many cores as the BLAS library uses for the GEMMs.
"""

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

_BLAS_THREAD_VARIABLES = ('OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS',
                          'OMP_NUM_THREADS')

_executor = None
_executor_workers = 0


def default_thread_count():
    """The number of threads BLAS is told to use, else the usable cores."""
    for name in _BLAS_THREAD_VARIABLES:
        try:
            count = int(os.environ.get(name, ''))
        except ValueError:
            continue
        if count > 0:
            return count
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _forget_executor():
    # A forked child has none of the parent's worker threads.
    global _executor, _executor_workers
    _executor, _executor_workers = None, 0


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_forget_executor)

#: Threads for the elementwise work; 1 runs everything in the caller.
THREADS = default_thread_count()


def _executor_for(parts):
    global _executor, _executor_workers
    if _executor is None or _executor_workers < parts - 1:
        _executor = ThreadPoolExecutor(max_workers=parts - 1)
        _executor_workers = parts - 1
    return _executor


def parallel_items(fn, count):
    """Call ``fn(i)`` for every ``i`` in ``range(count)`` from up to
    :data:`THREADS` threads (the calling thread included), each taking the
    next item as it gets free, and wait for all. Unlike the fixed parts of
    :func:`parallel_ranges`, a thread slowed down by other work on its
    core just takes fewer items.

    Args:
        fn (callable): Works on one item; items are independent.
        count (int): The number of items.
    """
    parts = max(1, min(THREADS, count))
    if parts == 1:
        for i in range(count):
            fn(i)
        return
    items = itertools.count()  # next() on it is atomic under the GIL

    def worker():
        for i in items:
            if i >= count:
                return
            fn(i)

    futures = [_executor_for(parts).submit(worker)
               for _ in range(parts - 1)]
    try:
        worker()
    finally:
        for future in futures:
            future.result()


def parallel_ranges(fn, length):
    """Call ``fn(start, stop)`` on consecutive parts of ``range(length)``,
    one per thread (the calling thread included), and wait for all.

    Args:
        fn (callable): Works on ``[start, stop)``; parts never overlap.
        length (int): The range to split.
    """
    parts = max(1, min(THREADS, length))
    if parts == 1:
        fn(0, length)
        return
    _executor_for(parts)
    bounds = [length * i // parts for i in range(parts + 1)]
    futures = [_executor.submit(fn, bounds[i], bounds[i + 1])
               for i in range(1, parts)]
    try:
        fn(bounds[0], bounds[1])
    finally:
        for future in futures:
            future.result()
