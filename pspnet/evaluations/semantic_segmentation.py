"""Semantic segmentation metrics from a confusion matrix.

With ``N[i, j]`` the number of pixels of true class ``i`` predicted as
class ``j``:

* IoU of class i: ``N[i, i] / (sum_j N[i, j] + sum_j N[j, i] - N[i, i])``
* class accuracy of class i: ``N[i, i] / sum_j N[i, j]``
* pixel accuracy: ``sum_i N[i, i] / sum_ij N[i, j]``

A class absent from both prediction and ground truth has a NaN IoU (and
a class absent from the ground truth a NaN class accuracy); means leave
NaN out.
"""

import warnings

import numpy as np

from pspnet.evaluations.confusion import calc_semantic_segmentation_confusion


def calc_semantic_segmentation_iou(confusion):
    """Per-class Intersection over Union.

    Args:
        confusion (numpy.ndarray): (n_class, n_class) confusion matrix.

    Returns:
        numpy.ndarray: (n_class,) float64 IoUs in [0, 1], NaN for classes
        in neither prediction nor ground truth.
    """
    confusion = np.asarray(confusion)
    true_positive = np.diag(confusion)
    union = confusion.sum(axis=1) + confusion.sum(axis=0) - true_positive
    with np.errstate(divide='ignore', invalid='ignore'):
        return true_positive / union


def _nanmean(values):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        return np.nanmean(values)


def semantic_segmentation_metrics(confusion):
    """Every metric of a confusion matrix.

    Args:
        confusion (numpy.ndarray): (n_class, n_class) confusion matrix.

    Returns:
        dict: ``iou`` ((n_class,) float64), ``miou`` (float),
        ``class_accuracy`` ((n_class,) float64), ``mean_class_accuracy``
        (float), ``pixel_accuracy`` (float). Values in [0, 1] or NaN.
    """
    confusion = np.asarray(confusion)
    iou = calc_semantic_segmentation_iou(confusion)
    true_positive = np.diag(confusion)
    with np.errstate(divide='ignore', invalid='ignore'):
        class_accuracy = true_positive / confusion.sum(axis=1)
        pixel_accuracy = true_positive.sum() / confusion.sum()
    return {'iou': iou, 'miou': _nanmean(iou),
            'pixel_accuracy': pixel_accuracy,
            'class_accuracy': class_accuracy,
            'mean_class_accuracy': _nanmean(class_accuracy)}


def eval_semantic_segmentation(pred_labels, gt_labels):
    """Evaluate predicted label maps against the ground truth.

    Computes the same figures as ChainerCV's function of the same name.
    The maps are read one pair at a time, so generators keep memory flat.

    Args:
        pred_labels (iterable of numpy.ndarray): (H, W) int32 predicted
            class ids in [0, n_class - 1].
        gt_labels (iterable of numpy.ndarray): (H, W) int32 true class ids
            in [-1, n_class - 1]; -1 pixels are ignored.

    Returns:
        dict: See :func:`semantic_segmentation_metrics`; ``n_class`` is the
        largest class id in either input plus one.
    """
    return semantic_segmentation_metrics(
        calc_semantic_segmentation_confusion(pred_labels, gt_labels))
