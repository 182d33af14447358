"""Crash-safe snapshots of a data-parallel training run, and resuming.

Rank 0 writes ``snapshot_iter_<N>.npz``: the whole trainer (model,
optimizer state, learning-rate schedule, log) plus the data iterator
position of every process, atomically (:mod:`pspnet.atomic`), so a crash
leaves either the old or the new complete file.
"""

import os
import re
import zipfile

import chainer
import numpy as np
from chainer.serializers import npz
from chainer.training import extension
from chainer.training.extensions import snapshot_writers

from pspnet.atomic import save_npz_atomic
from pspnet.errors import UserError

SNAPSHOT_PATTERN = 'snapshot_iter_{.updater.iteration}.npz'
_SNAPSHOT_NAME = re.compile(r'^snapshot_iter_(\d+)\.npz$')


class AtomicWriter(snapshot_writers.Writer):
    """Snapshot writer for ``chainer.training.extensions.snapshot``.

    Chainer's ``SimpleWriter`` already renames a finished file into place;
    this one also syncs the file and the folder to disk before and after
    the rename (a machine crash cannot leave a renamed but empty file) and
    writes no compressed zip (faster; weights barely compress).
    """

    def __call__(self, filename, outdir, target):
        save_npz_atomic(os.path.join(outdir, filename), target,
                        compression=False)
        self._post_save()


class ProcessIteratorStates(extension.Extension):
    """Carries every process's data-iterator position in rank 0's snapshot.

    Extend the trainer of every process with it, with the trigger of the
    snapshot and a higher priority. At that moment it gathers the
    iterator states on rank 0, where the trainer snapshot stores them under
    ``extensions/ProcessIteratorStates/rank<k>/``. When a snapshot is
    loaded, each process takes back its own iterator state (the updater's
    own entry is rank 0's). It also records the process count, which a
    resumed run must keep.

    Args:
        comm (chainermn.CommunicatorBase): Communicator of the processes.
        iterator (chainer.dataset.Iterator): This process's iterator.
    """

    priority = extension.PRIORITY_WRITER

    def __init__(self, comm, iterator):
        self._comm = comm
        self._iterator = iterator
        self._gathered = None

    def __call__(self, trainer):
        state = npz.serialize(self._iterator)
        if self._comm.size > 1:
            self._gathered = self._comm.gather_obj(state)
        else:
            self._gathered = [state]

    def serialize(self, serializer):
        if isinstance(serializer, chainer.serializer.Serializer):
            serializer('n_processes', self._comm.size)
            for rank, state in enumerate(self._gathered or []):
                child = serializer['rank{}'.format(rank)]
                for key, value in state.items():
                    child(key, value)
            return
        n_processes = int(serializer('n_processes', 0))
        if n_processes != self._comm.size:
            raise UserError(
                'the snapshot was written by {} processes but {} are '
                'running; resume with mpiexec -n {}'.format(
                    n_processes, self._comm.size, n_processes))
        self._iterator.serialize(
            serializer['rank{}'.format(self._comm.rank)])


def snapshot_iteration(path):
    """The iteration in a snapshot's file name, or None."""
    match = _SNAPSHOT_NAME.match(os.path.basename(path))
    return int(match.group(1)) if match else None


def find_latest_snapshot(out):
    """The snapshot of the highest iteration in folder ``out``, or None."""
    if not os.path.isdir(out):
        return None
    found = [(snapshot_iteration(name), name) for name in os.listdir(out)
             if snapshot_iteration(name) is not None]
    if not found:
        return None
    return os.path.join(out, max(found)[1])


def resolve_resume(resume, out):
    """The snapshot path to resume from.

    Args:
        resume (str or None): None (start fresh), ``'latest'`` (the newest
            snapshot in ``out``) or a snapshot path.
        out (str): The output folder.

    Raises:
        UserError: No snapshot there, or the file is not a snapshot.
    """
    if resume is None:
        return None
    if resume == 'latest':
        path = find_latest_snapshot(out)
        if path is None:
            raise UserError(
                'no snapshot_iter_*.npz in {} to resume from; start without '
                '--resume, or pass --resume PATH to a snapshot'.format(out))
        return path
    if not os.path.isfile(resume):
        raise UserError('snapshot {} does not exist; pass an existing '
                        'snapshot_iter_*.npz or --resume alone for the latest '
                        'in --out'.format(resume))
    return resume


def check_snapshot(path):
    """Check that ``path`` is a readable trainer snapshot.

    Returns:
        dict: ``iteration`` (int) and ``n_processes`` (int).

    Raises:
        UserError: Corrupt file, or not a trainer snapshot of this script.
    """
    key = 'extensions/ProcessIteratorStates/n_processes'
    try:
        with np.load(path, allow_pickle=False) as f:
            if key not in f.files or 'updater/iteration' not in f.files:
                raise UserError(
                    '{} is not a trainer snapshot of train_multi.py; pass a '
                    'snapshot_iter_*.npz from a run\'s output folder'.format(
                        path))
            return {'iteration': int(f['updater/iteration']),
                    'n_processes': int(f[key])}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise UserError('{} is truncated or corrupt ({}); resume from an '
                        'older snapshot_iter_*.npz'.format(path, e))


def load_snapshot(path, trainer):
    """Load a trainer snapshot into this process's trainer.

    Every process reads the same file, so the output folder must be shared
    by the machines (or the file copied to the same path on each).
    """
    try:
        chainer.serializers.load_npz(path, trainer)
    except KeyError as e:
        raise UserError('{} lacks {} that this run needs: it comes from '
                        'another configuration; resume with the options of '
                        'its run (see config.json)'.format(path, e))
