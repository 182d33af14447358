"""Crash-safe snapshots of a data-parallel training run, and resuming.

Rank 0 writes ``snapshot_iter_<N>.npz``: the whole trainer (model,
optimizer state, learning-rate schedule, log) plus the data iterator
position of every process and the run's id, atomically
(:mod:`pspnet.atomic`), so a crash leaves either the old or the new
complete file. Every other random state of a run is a function of the
seed and the iteration (:mod:`pspnet.training.randomness`), so this is all
a resumed run needs to continue bit for bit. A failed write (a full disk)
stops every process with one line.
"""

import os
import re
import zipfile

import chainer
import numpy as np
from chainer.serializers import npz
from chainer.training import extension
from chainer.training.extensions import snapshot_writers

from pspnet import atomic
from pspnet import mpi
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
        run_id (str or None): The run's id (:data:`RUN_ID_DIGITS` hex
            digits), stored so that a snapshot is known to belong to the
            run of its folder.
    """

    priority = extension.PRIORITY_WRITER

    def __init__(self, comm, iterator, run_id=None):
        self._comm = comm
        self._iterator = iterator
        self._gathered = None
        self._run_id = run_id

    def __call__(self, trainer):
        state = npz.serialize(self._iterator)
        if self._comm.size > 1:
            self._gathered = self._comm.gather_obj(state)
        else:
            self._gathered = [state]

    def serialize(self, serializer):
        if isinstance(serializer, chainer.serializer.Serializer):
            serializer('n_processes', self._comm.size)
            if self._run_id is not None:
                serializer('run_id', np.int64(int(self._run_id, 16)))
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


class CollectiveSnapshot(extension.Extension):
    """Rank 0 writes the trainer snapshot; every process learns whether it
    was written, so a failed write (a full disk, a folder made read-only)
    stops all of them with one line (:func:`pspnet.mpi.agree`) and leaves
    no temporary file.

    Extend the trainer of every process with it, with the snapshot's
    trigger, after :class:`ProcessIteratorStates`.

    Args:
        comm (chainermn.CommunicatorBase): Communicator of the processes.
        n_retains (int): Snapshots kept (older ones are removed).
        writer: Chainer snapshot writer (default :class:`AtomicWriter`).
    """

    #: Chainer's snapshot priority: after every other extension (the log
    #: of the iteration is in the snapshot).
    priority = -100

    def __init__(self, comm, n_retains, writer=None):
        from chainer.training.extensions import snapshot
        self._comm = comm
        self._snapshot = snapshot(
            filename=SNAPSHOT_PATTERN,
            writer=AtomicWriter() if writer is None else writer,
            n_retains=n_retains)

    def initialize(self, trainer):
        if self._comm.rank == 0:
            self._snapshot.initialize(trainer)

    def _write(self, trainer):
        if self._comm.rank != 0:
            return
        try:
            self._snapshot(trainer)
        except OSError as e:
            raise atomic.write_error(os.path.join(
                trainer.out, SNAPSHOT_PATTERN.format(trainer)), e)

    def __call__(self, trainer):
        mpi.agree(self._comm, self._write, trainer)

    def finalize(self):
        self._snapshot.finalize()


#: Hex digits of a run id (it fits an int64 in a snapshot).
RUN_ID_DIGITS = 15


def new_run_id():
    """A random run id: :data:`RUN_ID_DIGITS` hex digits."""
    import secrets
    return '{:0{}x}'.format(secrets.randbits(4 * RUN_ID_DIGITS),
                            RUN_ID_DIGITS)


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


#: First keys of the arrays of model weights (PSPNet or extractor npz).
_WEIGHT_KEYS = ('extractor/', 'ppm/', 'head_conv1/', 'head_conv2/',
                'conv1_1/', 'res2/', 'res3/', 'res4/', 'res5/')


def check_snapshot(path, complete=True):
    """Check that ``path`` is a readable trainer snapshot of this script.

    Args:
        path (str): The file.
        complete (bool): Also read every array and check its CRC-32, so
            that damage anywhere in the file is found before a resume
            starts (a few seconds for a ResNet101 snapshot).

    Returns:
        dict: ``iteration`` (int), ``n_processes`` (int) and ``run_id``
        (str, or None for snapshots without one).

    Raises:
        UserError: A truncated or corrupt file, model weights (with how to
        fine-tune from them), or another npz.
    """
    prefix = 'extensions/ProcessIteratorStates/'
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n[:-len('.npy')] if n.endswith('.npy') else n
                     for n in archive.namelist()]
            if (prefix + 'n_processes' not in names
                    or 'updater/iteration' not in names):
                if any(n.startswith(_WEIGHT_KEYS) for n in names):
                    raise UserError(
                        '{} holds model weights, not a training snapshot; '
                        'to fine-tune from them start a new run with '
                        '--pretrained-model {}'.format(path, path))
                raise UserError(
                    '{} is not a trainer snapshot of train_multi.py; pass a '
                    'snapshot_iter_*.npz from a run\'s output folder'.format(
                        path))
            if complete:
                bad = archive.testzip()
                if bad is not None:
                    raise zipfile.BadZipFile(
                        'member {} fails its CRC check'.format(bad))
        with np.load(path, allow_pickle=False) as f:
            run_id = (int(f[prefix + 'run_id'])
                      if prefix + 'run_id' in f.files else None)
            return {'iteration': int(f['updater/iteration']),
                    'n_processes': int(f[prefix + 'n_processes']),
                    'run_id': None if run_id is None else '{:0{}x}'.format(
                        run_id, RUN_ID_DIGITS)}
    except UserError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError,
            OSError, KeyError, RuntimeError) as e:
        raise UserError('{} is truncated or corrupt ({}); resume from an '
                        'older snapshot_iter_*.npz'.format(
                            path, str(e).splitlines()[0] if str(e)
                            else type(e).__name__))


def load_snapshot(path, trainer):
    """Load a trainer snapshot into this process's trainer.

    Every process reads the same file, so the output folder must be shared
    by the machines (or the file copied to the same path on each).
    """
    try:
        chainer.serializers.load_npz(path, trainer)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise UserError('{} is truncated or corrupt ({}); resume from an '
                        'older snapshot_iter_*.npz'.format(path, e))
    except KeyError as e:
        raise UserError('{} lacks {} that this run needs: it comes from '
                        'another configuration; resume with the options of '
                        'its run (see config.json)'.format(path, e))
