"""Confusion matrices of semantic segmentation, accumulated image by image.

Entry ``(i, j)`` counts the pixels whose ground truth is class ``i`` and
whose prediction is class ``j``; pixels whose ground truth is negative
(ignored) are not counted. Memory does not grow with the number of images.
"""

import chainer
import numpy as np


class SemanticSegmentationConfusion(object):
    """A confusion matrix that label maps are added to one at a time.

    Args:
        n_class (int or None): Number of classes. None lets the matrix
            grow to the largest label seen plus one, as ChainerCV's
            :func:`calc_semantic_segmentation_confusion` does.

    Attributes:
        matrix (numpy.ndarray): (n_class, n_class) int64 counts.
    """

    def __init__(self, n_class=None):
        self.fixed = n_class is not None
        size = n_class if self.fixed else 0
        self.matrix = np.zeros((size, size), dtype=np.int64)

    @property
    def n_class(self):
        return len(self.matrix)

    def update(self, pred_label, gt_label):
        """Count the pixels of one image.

        Args:
            pred_label (numpy.ndarray or cupy.ndarray): (H, W) integer
                predicted class ids in [0, n_class - 1].
            gt_label (numpy.ndarray or cupy.ndarray): (H, W) integer true
                class ids in [-1, n_class - 1]; negative ids are ignored.

        Raises:
            ValueError: The maps are not 2-D, differ in shape, or hold ids
            out of range.
        """
        xp = chainer.backend.get_array_module(pred_label, gt_label)
        if pred_label.ndim != 2 or gt_label.ndim != 2:
            raise ValueError('label maps must be 2-D (H, W), got shapes {} '
                             'and {}'.format(pred_label.shape, gt_label.shape))
        if pred_label.shape != gt_label.shape:
            raise ValueError('prediction shape {} differs from ground truth '
                             'shape {}'.format(pred_label.shape,
                                               gt_label.shape))
        if pred_label.size == 0:
            return
        pred = xp.asarray(pred_label).ravel().astype(np.int64)
        gt = xp.asarray(gt_label).ravel().astype(np.int64)
        largest = int(max(pred.max(), gt.max()))
        if largest >= self.n_class:
            if self.fixed:
                raise ValueError('label {} is out of range for {} classes'
                                 .format(largest, self.n_class))
            self._grow(largest + 1)
        counted = gt >= 0
        pred, gt = pred[counted], gt[counted]
        if pred.size and int(pred.min()) < 0:
            raise ValueError('predicted labels must not be negative where '
                             'the ground truth is counted')
        n = self.n_class
        counts = xp.bincount(gt * n + pred, minlength=n * n)
        self.matrix += chainer.backends.cuda.to_cpu(counts).reshape(n, n)

    def _grow(self, n_class):
        grown = np.zeros((n_class, n_class), dtype=np.int64)
        old = self.n_class
        grown[:old, :old] = self.matrix
        self.matrix = grown


def calc_semantic_segmentation_confusion(pred_labels, gt_labels, n_class=None):
    """Confusion matrix of pairs of label maps.

    Args:
        pred_labels (iterable of numpy.ndarray): (H, W) int32 predicted
            class ids in [0, n_class - 1].
        gt_labels (iterable of numpy.ndarray): (H, W) int32 true class ids
            in [-1, n_class - 1]; -1 is ignored. Same length and shapes as
            ``pred_labels``. Both may be generators: they are read one pair
            at a time.
        n_class (int or None): Number of classes; None (ChainerCV's
            behaviour) takes the largest id in either input plus one.

    Returns:
        numpy.ndarray: (n_class, n_class) int64; entry ``(i, j)`` counts
        pixels of true class ``i`` predicted as class ``j``.

    Raises:
        ValueError: The iterables differ in length, or a pair differs in
        shape.
    """
    confusion = SemanticSegmentationConfusion(n_class)
    pred_labels, gt_labels = iter(pred_labels), iter(gt_labels)
    missing = object()
    while True:
        pred_label = next(pred_labels, missing)
        gt_label = next(gt_labels, missing)
        if pred_label is missing and gt_label is missing:
            return confusion.matrix
        if pred_label is missing or gt_label is missing:
            raise ValueError('pred_labels and gt_labels differ in length')
        confusion.update(pred_label, gt_label)
