"""Training data of one process: its share of the dataset, augmented, in
shuffled batches, loaded by worker processes that work under MPI."""

import os

import chainer
import numpy as np

from pspnet import mpi
from pspnet.training.augmentation import TrainTransform

#: Most loader processes chosen automatically per training process.
MAX_AUTO_LOADERS = 4


def cpu_count():
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def auto_loader_count(comm):
    """Loader processes per training process when ``--loaderjob`` is not
    given: the cores of this machine shared out over its training
    processes, one left for each training process itself, at most
    :data:`MAX_AUTO_LOADERS`. 0 means loading in the training process."""
    cores_each = cpu_count() // max(comm.intra_size, 1)
    return max(0, min(MAX_AUTO_LOADERS, cores_each - 1))


def process_share(dataset, comm, seed=0):
    """This process's share of a training set, shuffled with ``seed``.

    Every process gets the same number of items, so every process runs the
    same number of iterations per epoch (neighbours share an item or so
    when the count does not divide evenly); the split is the same each time
    the run starts (so a resumed run reads the same shares).
    """
    order = np.random.RandomState(seed).permutation(len(dataset))
    share = mpi.shard_indices(len(dataset), comm, equal_length=True)
    return chainer.datasets.SubDataset(dataset, share.start, share.stop,
                                       order=order)


def training_iterator(dataset, mean, crop_size, batchsize, n_loaders):
    """Endless shuffled batches of augmented ``(img, label)`` pairs.

    Args:
        dataset: This process's share, items ``(img, label)``.
        mean (numpy.ndarray): (3, 1, 1) float32 mean.
        crop_size (tuple of ints): (height, width) of the crops.
        batchsize (int): Items per batch.
        n_loaders (int): Worker processes; 0 loads in this process. Workers
            come from the fork server that
            :func:`pspnet.mpi.start_loader_processes_safely`
            started before MPI.

    Returns:
        chainer.dataset.Iterator: Batches of (3, height, width) float32 and
        (height, width) int32 pairs.
    """
    transformed = chainer.datasets.TransformDataset(
        dataset, TrainTransform(mean, crop_size))
    if n_loaders <= 0:
        return chainer.iterators.SerialIterator(
            transformed, batchsize, repeat=True, shuffle=True)
    return chainer.iterators.MultiprocessIterator(
        transformed, batchsize, repeat=True, shuffle=True,
        n_processes=n_loaders, n_prefetch=2)
