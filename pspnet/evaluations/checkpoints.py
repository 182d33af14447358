"""What an evaluation has counted so far, and its checkpoint file.

:class:`EvaluationState` holds one process's running sums (the confusion
matrix and, for Cityscapes, the instance sums), each image's row of the
report (:class:`pspnet.evaluations.report.ImageRows`) and how many of its
images are done. A checkpoint (:func:`save_checkpoint`) writes it atomically
with the options that decide the result (:func:`fingerprint`); a run of
the same command continues from it (:func:`load_checkpoint`) and ends
with the same sums, bit for bit, as a run that was never interrupted: the
images are added in the same order to the same stored numbers.
"""

import hashlib
import json
import os
import zipfile

import numpy as np

from pspnet.atomic import save_npz_atomic
from pspnet.atomic import write_error
from pspnet.errors import UserError
from pspnet.evaluations.benchmark_scores import InstanceIoUAccumulator
from pspnet.evaluations.confusion import SemanticSegmentationConfusion
from pspnet.evaluations.report import ImageRows

#: Format of the checkpoint files written. Format 1 (before the per-image
#: rows) is still continued, its done images without rows; others are
#: refused.
CHECKPOINT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class EvaluationState(object):
    """Running sums of one process.

    Args:
        n_class (int): Number of classes.
        instances (bool): Keep Cityscapes' instance sums too.

    Attributes:
        confusion (SemanticSegmentationConfusion): (n_class, n_class).
        instances (InstanceIoUAccumulator or None): Instance sums.
        rows (pspnet.evaluations.report.ImageRows): Each image's scores.
        n_done (int): Images of this process's share added so far.
    """

    def __init__(self, n_class, instances=False):
        self.confusion = SemanticSegmentationConfusion(n_class)
        self.instances = InstanceIoUAccumulator() if instances else None
        self.rows = ImageRows()
        self.n_done = 0

    def add_image(self, pred_label, gt_label):
        """Count one image's labelled pixels and record its row.

        Args:
            pred_label (numpy.ndarray): (H, W) int predicted class ids in
                [0, n_class - 1].
            gt_label (numpy.ndarray): (H, W) int32 true class ids in
                [-1, n_class - 1], -1 not counted.

        Raises:
            ValueError: As :meth:`SemanticSegmentationConfusion.update`.
        """
        image = SemanticSegmentationConfusion(self.confusion.n_class)
        image.update(pred_label, gt_label)
        self.confusion.matrix += image.matrix
        self.rows.add(image.matrix)

    def arrays(self):
        """The state as a dict of numpy arrays."""
        arrays = {'confusion': self.confusion.matrix,
                  'n_done': np.array(self.n_done, dtype=np.int64)}
        if self.instances is not None:
            arrays['instance_class_sums'] = self.instances.class_sums
            arrays['instance_category_sums'] = self.instances.category_sums
        arrays.update(self.rows.arrays())
        return arrays

    def load_arrays(self, arrays):
        """Take the sums of :meth:`arrays` (shapes checked)."""
        mine = self.arrays()
        stored = set(arrays) - {'fingerprint', 'version'}
        if stored != set(mine):
            raise ValueError('checkpoint holds {}, expected {}'.format(
                ', '.join(sorted(stored)), ', '.join(sorted(mine))))
        for key, value in mine.items():
            if key in ImageRows.KEYS:  # as long as the images done
                continue
            if key not in arrays or np.shape(arrays[key]) != value.shape:
                raise ValueError('checkpoint array {} missing or of another '
                                 'shape'.format(key))
        self.confusion.matrix = np.array(arrays['confusion'], dtype=np.int64)
        self.n_done = int(arrays['n_done'])
        self.rows.load_arrays(arrays, self.n_done)
        if self.instances is not None:
            self.instances.class_sums = np.array(
                arrays['instance_class_sums'], dtype=np.float64)
            self.instances.category_sums = np.array(
                arrays['instance_category_sums'], dtype=np.float64)


def merge_states(states):
    """The sums of several processes' states, added in rank order (the
    same order whatever MPI does, so the result is reproducible); their
    per-image rows concatenated in rank order (the order of the images,
    each process having a block of them).

    Args:
        states (list of dict): :meth:`EvaluationState.arrays` per rank.

    Returns:
        dict: Their sums and rows, same keys.
    """
    total = {key: np.array(value, copy=True)
             for key, value in states[0].items()}
    for state in states[1:]:
        for key in total:
            if key in ImageRows.KEYS:
                total[key] = np.concatenate([total[key], state[key]])
            else:
                total[key] = total[key] + state[key]
    return total


def file_identity(path):
    """What identifies a weights file cheaply: its real path, size and
    modification time (None for None)."""
    if path is None:
        return None
    real = os.path.realpath(path)
    stat = os.stat(real)
    return {'path': real, 'size': stat.st_size, 'mtime_ns': stat.st_mtime_ns}


def dataset_digest(dataset, n_images):
    """A digest of the first ``n_images`` items' file names (relative to
    their common folder) and their count, equal on processes that see the
    same dataset in different places.

    Returns:
        str: Hex SHA-1.
    """
    paths = [p for p in list(dataset.img_paths[:n_images])
             + list(getattr(dataset, 'label_paths', ())[:n_images])
             if p is not None]
    common = os.path.commonpath([os.path.dirname(os.path.abspath(p))
                                 for p in paths]) if paths else ''
    digest = hashlib.sha1('{}\n'.format(n_images).encode('utf-8'))
    for path in paths:
        digest.update(os.path.relpath(os.path.abspath(path), common)
                      .encode('utf-8') + b'\n')
    return digest.hexdigest()


def fingerprint(**options):
    """The options that decide an evaluation's sums, as canonical JSON.

    Args:
        **options: JSON-able values (the model, the weights'
            :func:`file_identity`, scales, flip, input size, the dataset
            and its :func:`dataset_digest`, the process count and rank...).

    Returns:
        str: Sorted-key JSON.
    """
    return json.dumps(options, sort_keys=True)


def checkpoint_path(base, rank=0, size=1):
    """The checkpoint file beside ``base`` (the ``--json`` file or the
    ``--save-predictions`` folder), one per process under MPI."""
    base = os.path.abspath(base).rstrip(os.sep)
    if size == 1:
        return base + '.progress.npz'
    return '{}.progress-{}of{}.npz'.format(base, rank, size)


def save_checkpoint(path, state, fingerprint_text):
    """Write ``state`` and the fingerprint to ``path`` atomically.

    Raises:
        UserError: The file cannot be written (disk full, permissions).
    """
    arrays = dict(state.arrays())
    arrays['fingerprint'] = np.array(fingerprint_text)
    arrays['version'] = np.array(CHECKPOINT_VERSION, dtype=np.int64)
    try:
        save_npz_atomic(path, arrays, compression=False)
    except OSError as e:
        raise write_error(path, e)


def _differences(stored, current):
    try:
        stored = json.loads(stored)
    except ValueError:
        return ['(unreadable)']
    current = json.loads(current)
    return sorted(key for key in set(stored) | set(current)
                  if stored.get(key) != current.get(key))


def load_checkpoint(path, state, fingerprint_text, n_own):
    """Continue ``state`` from the checkpoint at ``path``, if there is one.

    Args:
        path (str): The checkpoint file.
        state (EvaluationState): A fresh state, filled in place.
        fingerprint_text (str): This run's :func:`fingerprint`.
        n_own (int): Images of this process's share.

    Returns:
        bool: True when a checkpoint was loaded.

    Raises:
        UserError: The checkpoint is unreadable, or was made with options
        that change the result (named in the message).
    """
    if not os.path.exists(path):
        return False
    fix = 'rerun with the same options, or delete {} to start over'.format(
        path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        version = int(arrays.get('version', -1))
        stored = str(arrays['fingerprint'])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise UserError('evaluation checkpoint {} is corrupt ({}); delete it '
                        'to start over'.format(path, e))
    if version not in READABLE_VERSIONS:
        raise UserError('evaluation checkpoint {} is of another version of '
                        'this program; delete it to start over'.format(path))
    if stored != fingerprint_text:
        raise UserError('evaluation checkpoint {} was made with other '
                        'options ({} differ); {}'.format(
                            path, ', '.join(_differences(stored,
                                                         fingerprint_text)),
                            fix))
    try:
        if version == 1:
            # Before the per-image rows: the images done have none.
            arrays.update(ImageRows().arrays())
        state.load_arrays(arrays)
    except (ValueError, TypeError, KeyError) as e:
        raise UserError('evaluation checkpoint {} is corrupt ({}); delete it '
                        'to start over'.format(path, e))
    if not 0 <= state.n_done <= n_own:
        raise UserError('evaluation checkpoint {} counts {} images of {}; '
                        'delete it to start over'.format(path, state.n_done,
                                                         n_own))
    return True


def remove_checkpoint(path):
    """Delete the checkpoint after a successful end."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
