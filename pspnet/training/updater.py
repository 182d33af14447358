"""The updater of data-parallel training: Chainer's ``StandardUpdater``
with the random state of each iteration seeded, and the batch fetched
collectively (a bad training item on one process stops every process
with one line)."""

import numpy as np
from chainer.dataset import convert
from chainer.training import updaters

from pspnet import mpi
from pspnet.training import loader
from pspnet.training import randomness


class CollectiveUpdater(updaters.StandardUpdater):
    """One update of data-parallel training per call.

    Before each update the global generators of NumPy and (on a GPU) CuPy,
    which Chainer's ``F.dropout`` draws its masks from, are seeded from
    stream ``(ITERATION, rank, iteration)`` of ``seed``
    (:mod:`pspnet.training.randomness`): the masks depend on the run's
    seed and the iteration only, also after a resume. The batch is taken
    from the iterator under :func:`pspnet.mpi.agree`, so a
    :class:`~pspnet.errors.UserError` of the loader (e.g. a label value
    that is no class, :func:`pspnet.training.loader.raise_load_failures`)
    on any process stops all of them together.

    Args:
        iterator: The training iterator.
        optimizer: The (multi-node) optimizer.
        comm (chainermn.CommunicatorBase): Communicator of the processes.
        seed (int): The run's seed.
        device: The device of the arrays (``chainer.get_device`` spec).
    """

    def __init__(self, iterator, optimizer, comm, seed, device=None):
        super(CollectiveUpdater, self).__init__(iterator, optimizer,
                                                device=device)
        self._comm = comm
        self._seed = int(seed)

    def _seed_iteration(self):
        rank = 0 if self._comm is None else self._comm.rank
        key = (self._seed, randomness.ITERATION, rank, self.iteration)
        randomness.seed_global(*key)
        xp = self.device.xp if self.device is not None else np
        if xp is not np:
            randomness.seed_global(*key, xp=xp)

    def update_core(self):
        self._seed_iteration()
        iterator = self._iterators['main']
        batch = mpi.agree(self._comm, lambda: loader.raise_load_failures(
            iterator.next()))
        in_arrays = convert._call_converter(
            self.converter, batch, self.input_device)
        optimizer = self._optimizers['main']
        loss_func = self.loss_func or optimizer.target
        optimizer.update(loss_func, *in_arrays)
        if self.auto_new_epoch and iterator.is_new_epoch:
            optimizer.new_epoch(auto=True)
