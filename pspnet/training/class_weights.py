"""Class weights of the training loss (``train_multi.py --class-weight``):
read from a file, or median-frequency balancing from the training labels.
"""

import json
import math

import numpy as np

from pspnet.errors import UserError

#: ``--class-weight`` value that computes the weights from the labels.
MEDIAN = 'median'

#: The range of a class weight other than 0 (0 leaves the class out of the
#: loss). The loss sums weight times per-pixel loss over the pixels of a
#: batch in float32 before it divides by their count: with weights up to
#: 1e6, fewer than 2**31 pixels and per-pixel losses below 1e4 (a pixel
#: whose loss is 1e4 has the probability e**-10000: training has long
#: diverged) the sum stays below 1e20, far from float32's 3.4e38, and so do
#: the gradients, which scale with the weights. Weights below 1e-6 would
#: round to nothing next to the others (and below 1e-38 to 0 in float32: a
#: run that learns nothing).
MIN_WEIGHT = 1e-6
MAX_WEIGHT = 1e6


def read_class_weight_file(path):
    """Weights from a file: a JSON list of numbers, or text with one number
    per line (or separated by spaces or commas; ``#`` starts a comment).

    Returns:
        tuple of float: The weights, each 0 or from :data:`MIN_WEIGHT` to
        :data:`MAX_WEIGHT`, not all 0.

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

    Each weight is 0 (the class leaves the loss) or a number from
    :data:`MIN_WEIGHT` to :data:`MAX_WEIGHT`, where float32 training cannot
    overflow; not all are 0.

    Raises:
        UserError: Not numbers; negative, too small, too large or
        non-finite values; all 0; or (with ``n_class``) another count than
        the classes.
    """
    weights = []
    for i, value in enumerate(values):
        # Compared before any conversion: NaN fails every comparison, and
        # a JSON integer too large for a float compares as it is.
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not (value == 0 or MIN_WEIGHT <= value <= MAX_WEIGHT)):
            raise UserError(
                '{}: class weight {} is {}; use finite numbers of at least '
                '0: 0 leaves the class out, others from {:g} to {:g} keep '
                'float32 training from overflowing'.format(
                    source, i, _short(value), MIN_WEIGHT, MAX_WEIGHT))
        weights.append(float(value))
    if not weights or not any(weights):
        raise UserError('{}: no positive class weight; give one number per '
                        'class, not all 0'.format(source))
    if n_class is not None and len(weights) != n_class:
        raise UserError('{} gives {} class weights but the dataset has {} '
                        'classes; give one per class'.format(
                            source, len(weights), n_class))
    return tuple(weights)


def _short(value):
    """A value for a one-line message (a huge JSON integer shortened)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:20] + '...'


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

    Raises:
        UserError: No labelled pixel; a weight outside :data:`MIN_WEIGHT`
        to :data:`MAX_WEIGHT` (a class with a handful of pixels).
    """
    pixels, image_pixels = (np.asarray(t, dtype=np.float64) for t in totals)
    present = pixels > 0
    if not present.any():
        raise UserError('the training labels hold no labelled pixel; '
                        '--class-weight median needs labels')
    freq = np.where(present, pixels / np.maximum(image_pixels, 1), 1)
    median = np.median(freq[present])
    weights = np.where(present, median / freq, 1.0)
    for c in np.flatnonzero((weights < MIN_WEIGHT) | (weights > MAX_WEIGHT)):
        raise UserError(
            '--class-weight median gives class {} the weight {:.3g} (it '
            'has {:.2g} of the labelled pixels of its images, the median '
            'class {:.2g}); weights outside {:g} to {:g} may overflow '
            'float32 training: give them in a file instead'.format(
                c, weights[c], freq[c], median, MIN_WEIGHT, MAX_WEIGHT))
    return tuple(float(w) for w in weights)
