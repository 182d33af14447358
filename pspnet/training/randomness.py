"""The random streams of a training run.

Every random draw of a run comes from a stream that is a function of the
run's ``--seed`` and of *where* it is drawn (what for, which process,
which epoch, which sample, which iteration), never of process state: the
order of an epoch, the augmentation of a sample, the initialization of
the new layers, the dropout masks of an iteration. So two runs with the
same seed, data, process count and options draw the same numbers, whatever
the loader processes' timing, and a run resumed from a snapshot draws what
the uninterrupted run would have drawn.

Streams are NumPy ``Generator`` objects (PCG64) seeded by a
``SeedSequence`` of entropy ``seed`` and spawn key ``(purpose, ...)``.
"""

import contextlib

import numpy as np

#: Purposes: the first element of every stream's key.
INITIALIZATION = 0
ORDER = 1
AUGMENTATION = 2
ITERATION = 3


def seed_sequence(seed, purpose, *key):
    """The ``SeedSequence`` of stream ``(purpose, *key)`` of run ``seed``.

    Args:
        seed (int): The run's ``--seed``, >= 0.
        purpose (int): One of the purposes of this module.
        key (ints): Where the stream is drawn (rank, epoch, sample,
            iteration), each >= 0.
    """
    return np.random.SeedSequence(
        entropy=int(seed), spawn_key=(int(purpose),) + tuple(
            int(k) for k in key))


def generator(seed, purpose, *key):
    """A fresh ``numpy.random.Generator`` of stream ``(purpose, *key)``."""
    return np.random.Generator(np.random.PCG64(
        seed_sequence(seed, purpose, *key)))


def seed_global(seed, purpose, *key, xp=np):
    """Seed the global generator of ``xp`` (NumPy, or CuPy for arrays on a
    GPU) from stream ``(purpose, *key)``: Chainer's initializers and
    ``F.dropout`` draw from it."""
    state = seed_sequence(seed, purpose, *key).generate_state(4)
    if xp is np:
        np.random.seed(state)
    else:
        xp.random.seed(int(state[0]) | (int(state[1]) << 32))


@contextlib.contextmanager
def seeded_numpy(seed, purpose, *key):
    """NumPy's global generator seeded from a stream inside the block
    (e.g. while new layers are initialized), restored after it."""
    saved = np.random.get_state()
    seed_global(seed, purpose, *key)
    try:
        yield
    finally:
        np.random.set_state(saved)


class EpochOrderSampler(object):
    """Order sampler of Chainer's iterators whose order of epoch ``e`` is a
    function of ``(seed, rank, e)`` only.

    The iterator keeps only the current order (also in a snapshot), so the
    epoch is written into it: the order of epoch ``e`` holds *draw ids*
    ``(e + 1) * n + i`` for a permutation of the sample indices ``i`` in
    ``range(n)``. :class:`pspnet.training.loader.AugmentedDataset` takes
    draw ids and decodes them with :func:`decode_draw`. The iterator's
    first call (its reset) passes ``arange(n)``, whose values are below
    ``n``: that starts epoch 0.

    Args:
        seed (int): The run's seed.
        rank (int): The process's rank (each process shuffles its own
            share in its own way).
    """

    def __init__(self, seed, rank=0):
        self.seed = int(seed)
        self.rank = int(rank)

    def order(self, epoch, n):
        """(n,) int64 draw ids of epoch ``epoch``."""
        permutation = generator(
            self.seed, ORDER, self.rank, epoch).permutation(n)
        return (epoch + 1) * n + permutation.astype(np.int64)

    def __call__(self, current_order, current_position):
        n = len(current_order)
        if n == 0:
            return np.asarray(current_order, dtype=np.int64)
        if int(np.max(current_order)) < n:
            epoch = 0
        else:
            # The order that just ended is of epoch current // n - 1.
            epoch = int(current_order[0]) // n
        return self.order(epoch, n)


def decode_draw(draw, n):
    """``(epoch, index)`` of draw id ``draw`` of a dataset of ``n`` items
    (see :class:`EpochOrderSampler`); ids below ``n`` are the indices of
    epoch 0 themselves."""
    epoch, index = divmod(int(draw), n)
    return max(epoch - 1, 0), index
