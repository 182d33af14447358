"""Class weights of the training loss (``train_multi.py --class-weight``):
read from a file, or median-frequency balancing from the training labels.
"""

import json
import math

import numpy as np

from pspnet.errors import UserError

#: ``--class-weight`` value that computes the weights from the labels.
MEDIAN = 'median'


def read_class_weight_file(path):
    """Weights from a file: a JSON list of numbers, or text with one number
    per line (or separated by spaces or commas; ``#`` starts a comment).

    Returns:
        tuple of float: The weights, finite and not negative, not all 0.

    Raises:
        UserError: Missing file, no numbers, a bad value.
    """
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise UserError('cannot read class weight file {} ({}); pass an '
                        'existing file or median'.format(path, e))
    try:
        values = json.loads(text)
        if not isinstance(values, list):
            raise ValueError
    except ValueError:
        fields = ' '.join(line.split('#')[0] for line in text.splitlines()
                          ).replace(',', ' ').split()
        values = []
        for field in fields:
            try:
                values.append(float(field))
            except ValueError:
                raise UserError('class weight file {}: {!r} is not a number; '
                                'write one number per class'.format(
                                    path, field))
    return check_class_weights(values, path)


def check_class_weights(values, source, n_class=None):
    """The weights as floats after checking them.

    Raises:
        UserError: Not numbers, negative or non-finite values, all 0, or
        (with ``n_class``) another count than the classes.
    """
    weights = []
    for i, value in enumerate(values):
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value < 0):
            raise UserError('{}: class weight {} is {!r}; use finite numbers '
                            'of at least 0'.format(source, i, value))
        weights.append(float(value))
    if not weights or not any(weights):
        raise UserError('{}: no positive class weight; give one number per '
                        'class, not all 0'.format(source))
    if n_class is not None and len(weights) != n_class:
        raise UserError('{} gives {} class weights but the dataset has {} '
                        'classes; give one per class'.format(
                            source, len(weights), n_class))
    return tuple(weights)


def count_pixels(dataset, indices):
    """Per-class pixel counts of the label maps of ``indices``.

    Uses the dataset's cached ``check_labels`` when it has one (described
    datasets), else reads every label map.

    Returns:
        numpy.ndarray: (2, n_class) int64: row 0 the pixels of each class,
        row 1 the labelled pixels of the images in which the class appears.
    """
    if hasattr(dataset, 'check_labels'):
        return dataset.check_labels(indices)
    totals = np.zeros((2, dataset.n_class), dtype=np.int64)
    for i in indices:
        label = dataset.get_label(i)
        counts = np.bincount(label[label >= 0].ravel(),
                             minlength=dataset.n_class)
        totals[0] += counts
        totals[1] += np.where(counts > 0, counts.sum(), 0)
    return totals


def median_frequency_weights(totals):
    """Median-frequency balancing (Eigen and Fergus, 2015).

    The frequency of class c is its pixels over the labelled pixels of the
    images where it appears; its weight is the median frequency over the
    classes that appear divided by its frequency. Classes absent from the
    training labels get 1 (they never weigh a pixel).

    Args:
        totals (numpy.ndarray): (2, n_class) int64, see
            :func:`count_pixels`.

    Returns:
        tuple of float: n_class weights, positive.
    """
    pixels, image_pixels = (np.asarray(t, dtype=np.float64) for t in totals)
    present = pixels > 0
    if not present.any():
        raise UserError('the training labels hold no labelled pixel; '
                        '--class-weight median needs labels')
    freq = np.where(present, pixels / np.maximum(image_pixels, 1), 1)
    median = np.median(freq[present])
    return tuple(float(w) for w in np.where(present, median / freq, 1.0))
