"""Training data of one process: its share of the dataset, augmented, in
shuffled batches, loaded by worker processes that work under MPI.

What a batch holds depends on the run's seed, the process's rank and the
iteration only (see :mod:`pspnet.training.randomness`): not on how many
loader processes there are nor on their timing.
"""

import os

import chainer
import numpy as np

from pspnet import mpi
from pspnet.errors import UserError
from pspnet.training import randomness
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


class LoadFailure(object):
    """What :class:`AugmentedDataset` returns in place of an item it could
    not load: Chainer's ``MultiprocessIterator`` waits forever when a
    loader process raises, so the error travels as data and
    :func:`raise_load_failures` raises it in the training process.

    Args:
        message (str): The :class:`~pspnet.errors.UserError`'s line, or
            None for another error.
        details (str): The traceback of another error.
    """

    def __init__(self, message, details=None):
        self.message = message
        self.details = details


def raise_load_failures(batch):
    """Raise the error of the first :class:`LoadFailure` in a batch.

    Raises:
        UserError: For a user error of the loader (e.g. a label value that
        is no class), with its line.
        RuntimeError: For any other error, with the loader's traceback.
    """
    for item in batch:
        if isinstance(item, LoadFailure):
            if item.message is not None:
                raise UserError(item.message)
            raise RuntimeError('loading a training item failed:\n'
                               + item.details)
    return batch


class AugmentedDataset(chainer.dataset.DatasetMixin):
    """A dataset whose items are augmented with their own random stream.

    It is indexed by the draw ids of
    :class:`pspnet.training.randomness.EpochOrderSampler`: draw ``d`` is
    item ``i`` of epoch ``e``
    (:func:`~pspnet.training.randomness.decode_draw`),
    augmented by ``transform(dataset[i], rng)`` with the generator of
    stream ``(AUGMENTATION, rank, e, i)`` of ``seed``. An item that cannot
    be loaded becomes a :class:`LoadFailure`.

    Args:
        dataset: Items ``(img, label)``.
        transform (callable): ``transform((img, label), rng)``, e.g.
            :class:`~pspnet.training.augmentation.TrainTransform`.
        seed (int): The run's seed.
        rank (int): The process's rank.
    """

    def __init__(self, dataset, transform, seed, rank=0):
        self._dataset = dataset
        self._transform = transform
        self._seed = int(seed)
        self._rank = int(rank)

    def __len__(self):
        return len(self._dataset)

    def get_example(self, draw):
        epoch, index = randomness.decode_draw(draw, len(self._dataset))
        rng = randomness.generator(self._seed, randomness.AUGMENTATION,
                                   self._rank, epoch, index)
        try:
            return self._transform(self._dataset[index], rng)
        except UserError as e:
            return LoadFailure(str(e))
        except Exception:
            import traceback
            return LoadFailure(None, traceback.format_exc())


def training_iterator(dataset, mean, crop_size, batchsize, n_loaders,
                      seed=0, rank=0):
    """Endless shuffled batches of augmented ``(img, label)`` pairs.

    The order of each epoch and the augmentation of each sample are
    streams of ``seed`` (:mod:`pspnet.training.randomness`), so the batches
    are the same with any ``n_loaders`` and any loader timing.

    Args:
        dataset: This process's share, items ``(img, label)``.
        mean (numpy.ndarray): (3, 1, 1) float32 mean.
        crop_size (tuple of ints): (height, width) of the crops.
        batchsize (int): Items per batch.
        n_loaders (int): Worker processes; 0 loads in this process. Workers
            come from the fork server that
            :func:`pspnet.mpi.start_loader_processes_safely`
            started before MPI.
        seed (int): The run's seed.
        rank (int): The process's rank.

    Returns:
        chainer.dataset.Iterator: Batches of (3, height, width) float32 and
        (height, width) int32 pairs.
    """
    augmented = AugmentedDataset(dataset, TrainTransform(mean, crop_size),
                                 seed, rank)
    sampler = randomness.EpochOrderSampler(seed, rank)
    if n_loaders <= 0:
        return chainer.iterators.SerialIterator(
            augmented, batchsize, repeat=True, order_sampler=sampler)
    return chainer.iterators.MultiprocessIterator(
        augmented, batchsize, repeat=True, order_sampler=sampler,
        n_processes=n_loaders, n_prefetch=2)


def check_label_files(dataset, indices):
    """Check, from file headers only, that the label files of some items
    have their images' sizes as displayed (EXIF orientation applied, as
    the loader reads them) and are single-channel or palette images (a
    bad item would stop the run when the loader first meets it, maybe
    hours later). Label values need the pixels: the loader checks them.

    Args:
        dataset: A dataset with ``img_paths`` and ``label_paths`` (the
            datasets of :mod:`pspnet.datasets`); other datasets are not
            checked.
        indices (iterable of ints): The items to check.

    Raises:
        UserError: The first label file whose size is not its image's
        (naming both files) or that is a colour image.
    """
    from pspnet.datasets import base
    img_paths = getattr(dataset, 'img_paths', None)
    label_paths = getattr(dataset, 'label_paths', None)
    if img_paths is None or label_paths is None:
        return
    for i in indices:
        img_header = base.image_header(img_paths[i])
        label_header = base.image_header(label_paths[i])
        if img_header is None or label_header is None:
            continue
        # A described dataset knows its label format (colour-coded ones).
        problem = getattr(dataset, 'label_mode_problem',
                          base.label_mode_problem)(label_paths[i],
                                                   label_header.mode)
        if problem is not None:
            raise UserError(problem + ' (checked before training)')
        base.check_label_size(label_paths[i], label_header.size,
                              img_paths[i], img_header.size,
                              'fix or remove the pair; checked before '
                              'training')
