"""The figures of an evaluation report that are numbers: each image's
scores, the worst images, the most confused pairs of classes, the CSV
tables, and the checks of the report's folder.

Each image's row (:class:`ImageRows`) is recorded while evaluating, for
every evaluation with labels (a few numbers per image), and kept in the
checkpoint with the confusion matrix, so that a continued run has the rows
of the images done before it. The pictures and the page are drawn by
:mod:`pspnet.evaluation_report`.
"""

import csv
import io
import os

import numpy as np

from pspnet.errors import UserError

#: The files of a report folder; the pictures of the worst images go into
#: :data:`WORST_FOLDER`.
FILES = ('index.html', 'confusion_matrix.png', 'confusion_matrix.csv',
         'per_image.csv')
WORST_FOLDER = 'worst'
#: Pictures of the worst images a report draws unless told otherwise.
DEFAULT_WORST = 8
#: Pairs of classes listed as the most confused.
DEFAULT_PAIRS = 20
#: First cell of the header of ``confusion_matrix.csv``.
CORNER = 'true \\ predicted'
#: Header of ``per_image.csv``.
PER_IMAGE_HEADER = ('image', 'labelled_pixels', 'pixel_accuracy',
                    'iou_present')


def image_scores(confusion):
    """The scores of one image from its confusion matrix.

    Args:
        confusion (numpy.ndarray): (n_class, n_class) int64; entry (i, j)
            counts the labelled pixels of true class i predicted as j.

    Returns:
        tuple: ``(pixels, correct, iou)``: the labelled pixels (int), those
        predicted right (int), and the mean IoU over the classes present
        in the truth or the prediction of its labelled pixels (float; NaN
        when no pixel is labelled).
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    correct = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - correct
    present = union > 0
    iou = (float(np.mean(correct[present] / union[present]))
           if present.any() else float('nan'))
    return int(confusion.sum()), int(correct.sum()), iou


class ImageRows(object):
    """The rows of the last images done of one process's share, in order.

    The rows are those of all the images done, unless the first ones were
    done by a version that kept no rows (a checkpoint of format 1): a
    state of ``n_done`` images holds the rows of the last ``len(rows)``.

    Attributes:
        pixels (list of int): Labelled pixels of each image.
        correct (list of int): Its pixels predicted right.
        iou (list of float): Its IoU over the classes present (NaN
            without labelled pixels).
    """

    #: Keys of the rows in :meth:`arrays` (concatenated over processes).
    KEYS = ('image_pixels', 'image_correct', 'image_iou')

    def __init__(self):
        self.pixels, self.correct, self.iou = [], [], []

    def __len__(self):
        return len(self.pixels)

    def add(self, confusion):
        """Add the row of an image of confusion matrix ``confusion``."""
        pixels, correct, iou = image_scores(confusion)
        self.pixels.append(pixels)
        self.correct.append(correct)
        self.iou.append(iou)

    def arrays(self):
        """The rows as a dict of (n,) numpy arrays: int64, int64,
        float64."""
        return {'image_pixels': np.array(self.pixels, dtype=np.int64),
                'image_correct': np.array(self.correct, dtype=np.int64),
                'image_iou': np.array(self.iou, dtype=np.float64)}

    def load_arrays(self, arrays, n_done):
        """Take the rows of :meth:`arrays` of a state of ``n_done`` images.

        Raises:
            ValueError: The columns differ in length or hold more rows than
            ``n_done``.
        """
        columns = [np.asarray(arrays[key]) for key in self.KEYS]
        if any(c.ndim != 1 or len(c) != len(columns[0]) for c in columns) \
                or len(columns[0]) > n_done:
            raise ValueError('per-image rows of other lengths than the {} '
                             'images done'.format(n_done))
        self.pixels = [int(v) for v in columns[0]]
        self.correct = [int(v) for v in columns[1]]
        self.iou = [float(v) for v in columns[2]]


def pixel_accuracies(pixels, correct):
    """(n,) float64 pixel accuracy of each image; NaN without labelled
    pixels."""
    pixels = np.asarray(pixels, dtype=np.int64)
    correct = np.asarray(correct, dtype=np.int64)
    accuracy = np.full(len(pixels), np.nan)
    counted = pixels > 0
    accuracy[counted] = correct[counted] / pixels[counted]
    return accuracy


def worst_images(pixels, correct, iou, n):
    """The positions of the ``n`` worst images: the lowest IoU over the
    classes present first, then the lowest pixel accuracy, then the first
    in order. Images without labelled pixels are never among them.

    Args:
        pixels, correct, iou (sequence): The rows (:class:`ImageRows`).
        n (int): How many (fewer when fewer images have labels).

    Returns:
        list of int: Positions into the rows, worst first.
    """
    accuracy = pixel_accuracies(pixels, correct)
    candidates = [k for k in range(len(accuracy)) if not np.isnan(
        accuracy[k]) and not np.isnan(iou[k])]
    candidates.sort(key=lambda k: (iou[k], accuracy[k], k))
    return candidates[:n]


def confused_pairs(confusion, n=DEFAULT_PAIRS):
    """The pairs of different classes with the most pixels of the first
    predicted as the second.

    Args:
        confusion (numpy.ndarray): (n_class, n_class) int64.
        n (int): How many pairs at most (pairs of no pixels are left out).

    Returns:
        list of tuple: ``(true, predicted, pixels, share)``, the most
        pixels first (ties: lower true, then predicted class id first);
        ``share`` is the share of the true class's pixels (float).
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    flat = np.flatnonzero(off)
    # Stable on the row-major order: ties keep the lower ids first.
    flat = flat[np.argsort(-off.ravel()[flat], kind='stable')][:n]
    rows = confusion.sum(axis=1)
    pairs = []
    for index in flat:
        true, predicted = divmod(int(index), len(confusion))
        pixels = int(off[true, predicted])
        pairs.append((true, predicted, pixels, pixels / int(rows[true])))
    return pairs


def _csv_text(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerows(rows)
    return buffer.getvalue()


def confusion_csv(confusion, label_names):
    """``confusion_matrix.csv``: a header of :data:`CORNER` and the
    predicted class names, then one row per true class, its name first,
    then its raw pixel counts.

    Returns:
        str: The CSV text (``\\n`` line ends; names quoted as CSV needs).
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    return _csv_text([[CORNER] + list(label_names)] + [
        [name] + [str(int(v)) for v in row]
        for name, row in zip(label_names, confusion)])


def _decimal(value):
    return 'nan' if np.isnan(value) else '{:.6f}'.format(value)


def per_image_csv(names, pixels, correct, iou):
    """``per_image.csv``: :data:`PER_IMAGE_HEADER`, then one row per image
    in the dataset's order: its name, labelled pixels, pixel accuracy and
    IoU over the classes present (6 decimals; ``nan`` for an image without
    labelled pixels).

    Returns:
        str: The CSV text.
    """
    accuracy = pixel_accuracies(pixels, correct)
    return _csv_text([PER_IMAGE_HEADER] + [
        [name, str(int(p)), _decimal(a), _decimal(float(i))]
        for name, p, a, i in zip(names, pixels, accuracy, iou)])


def image_names(img_paths):
    """Each image's path relative to the images' common folder (the same
    wherever the dataset lies), ``/``-separated."""
    if not len(img_paths):
        return []
    paths = [os.path.abspath(p) for p in img_paths]
    common = os.path.commonpath([os.path.dirname(p) for p in paths])
    return [os.path.relpath(p, common).replace(os.sep, '/') for p in paths]


def _inside(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _foreign_entry(folder):
    """The first entry of ``folder`` that no report writes, or None."""
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name in FILES and os.path.isfile(path) \
                and not os.path.islink(path):
            continue
        if name == WORST_FOLDER and os.path.isdir(path) \
                and not os.path.islink(path):
            for picture in sorted(os.listdir(path)):
                inner = os.path.join(path, picture)
                if not (picture.endswith('.png') and os.path.isfile(inner)
                        and not os.path.islink(inner)):
                    return inner
            continue
        return path
    return None


def check_report_folder(folder, folders=(), files=()):
    """Check, before the evaluation starts, that a report may be written
    to ``folder``: it is made beside it and renamed into place at the end
    (replacing an earlier report there), so the folder above must exist
    and be writable, and the folder must be new, empty or a report.

    Args:
        folder (str): The ``--report`` folder.
        folders (sequence of (str, str)): (option, folder) of the other
            output folders, which must not overlap it.
        files (sequence of (str, str)): (option, file) of other outputs,
            which must not lie in it.

    Raises:
        UserError: One line naming the problem and the fix.
    """
    path = os.path.abspath(folder)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UserError('--report {} is a file; give a folder'.format(folder))
    if os.path.islink(path):
        raise UserError('--report {} is a link; give the folder itself'
                        .format(folder))
    if _inside(os.getcwd(), path):
        raise UserError('--report {} holds the current folder, which the '
                        'report would replace; give a folder of its own'
                        .format(folder))
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise UserError('the folder {} of --report {} does not exist; create '
                        'it or write elsewhere'.format(parent, folder))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError('cannot create --report {} in {} (permission '
                        'denied); choose a folder you may write to'.format(
                            folder, parent))
    for option, other in folders:
        if other and (_inside(os.path.abspath(other), path)
                      or _inside(path, os.path.abspath(other))):
            raise UserError('--report {} and {} {} overlap; give them '
                            'separate folders'.format(folder, option, other))
    for option, other in files:
        if other and _inside(os.path.abspath(other), path):
            raise UserError('{} {} lies in --report {}, which the report '
                            'replaces; write it elsewhere'.format(
                                option, other, folder))
    if os.path.isdir(path):
        foreign = _foreign_entry(path)
        if foreign is not None:
            raise UserError(
                '--report {} holds {}, which is no file of a report; give a '
                'new or empty folder (an earlier report there is replaced)'
                .format(folder, foreign))
