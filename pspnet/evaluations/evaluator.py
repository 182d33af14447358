"""Evaluating a segmentation model on a dataset with a running confusion
matrix, and reporting the figures as ChainerCV's example script does."""

import json
import math

import numpy as np

from pspnet.atomic import write_atomic
from pspnet.evaluations.confusion import SemanticSegmentationConfusion


def evaluate_model(model, dataset, indices, n_class, batchsize=1,
                   progress=None):
    """Confusion matrix of a model's predictions on some dataset items.

    Only ``batchsize`` images and label maps are held at a time, so memory
    does not grow with the number of images.

    Args:
        model: Has ``predict(imgs)`` taking a list of (3, H, W) float32 RGB
            images and returning a list of (H, W) int class-id maps.
        dataset: Items ``(img, label)``; label (H, W) int32 in
            [-1, n_class - 1], -1 ignored.
        indices (sequence of ints): Items to evaluate, in this order.
        n_class (int): Number of classes.
        batchsize (int): Images per ``predict`` call.
        progress (callable): Called with the number of images done after
            each call, or None.

    Returns:
        numpy.ndarray: (n_class, n_class) int64 confusion matrix.
    """
    confusion = SemanticSegmentationConfusion(n_class)
    indices = list(indices)
    for start in range(0, len(indices), batchsize):
        items = [dataset[i] for i in indices[start:start + batchsize]]
        pred_labels = model.predict([img for img, _ in items])
        for pred_label, (_, gt_label) in zip(pred_labels, items):
            confusion.update(pred_label, gt_label)
        del items, pred_labels
        if progress is not None:
            progress(min(start + batchsize, len(indices)))
    return confusion.matrix


def format_table(metrics, label_names):
    """ChainerCV's result table: one IoU line per class, then the means.

    Args:
        metrics (dict): From :func:`semantic_segmentation_metrics`.
        label_names (sequence of str): Class names, in class-id order.

    Returns:
        str: The table, lines ending with a newline.
    """
    line = '{:>23} : {:.4f}\n'
    rows = [line.format(name, iou)
            for name, iou in zip(label_names, metrics['iou'])]
    rows.append('=' * 34 + '\n')
    rows.append(line.format('mean IoU', metrics['miou']))
    rows.append(line.format('Class average accuracy',
                            metrics['mean_class_accuracy']))
    rows.append(line.format('Global average accuracy',
                            metrics['pixel_accuracy']))
    return ''.join(rows)


def _number(value):
    value = float(value)
    return None if math.isnan(value) else value


def metrics_record(metrics, n_images, label_names, confusion):
    """Every figure as a JSON-ready dict; NaN becomes None (``null``).

    Keys: ``miou``, ``iou`` (list), ``mean_class_accuracy``,
    ``class_accuracy`` (list), ``pixel_accuracy``, ``n_images``,
    ``label_names`` and ``confusion`` (list of lists of ints).
    """
    return {
        'miou': _number(metrics['miou']),
        'iou': [_number(v) for v in metrics['iou']],
        'mean_class_accuracy': _number(metrics['mean_class_accuracy']),
        'class_accuracy': [_number(v) for v in metrics['class_accuracy']],
        'pixel_accuracy': _number(metrics['pixel_accuracy']),
        'n_images': int(n_images),
        'label_names': list(label_names),
        'confusion': np.asarray(confusion).tolist(),
    }


def write_json(record, path):
    """Write ``record`` to ``path`` atomically (:mod:`pspnet.atomic`)."""
    # One key per line, each value on one line.
    text = '{\n' + ',\n'.join(
        ' {}: {}'.format(json.dumps(key), json.dumps(value))
        for key, value in record.items()) + '\n}\n'
    write_atomic(path, lambda f: f.write(text.encode('utf-8')))
