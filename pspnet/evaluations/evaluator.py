"""Evaluating a segmentation model on a dataset with a running confusion
matrix, and reporting the figures as ChainerCV's example script does."""

import json
import math

import chainer
import numpy as np

from pspnet.atomic import write_atomic
from pspnet.errors import UserError
from pspnet.evaluations.checkpoints import EvaluationState


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
    state = EvaluationState(n_class)
    run_evaluation(model, dataset, indices, state, batchsize=batchsize,
                   progress=progress)
    return state.confusion.matrix


def run_evaluation(model, dataset, indices, state, batchsize=1,
                   progress=None, writer=None, after_batch=None):
    """Add a model's predictions on dataset items to a running state,
    continuing after the ``state.n_done`` items already counted.

    Args:
        model: As for :func:`evaluate_model`.
        dataset: Items ``(img, label)``, label None when the dataset has no
            labels (``dataset.has_labels`` False: nothing is counted).
            With ``state.instances``, ``dataset.get_instance_ids(i)`` gives
            the (H, W) instance ids of item ``i``.
        indices (sequence of ints): This process's items, in order.
        state (pspnet.evaluations.checkpoints.EvaluationState): Updated in
            place (the confusion matrix and each image's row);
            ``state.n_done`` counts the items of ``indices`` done.
        batchsize (int): Images per ``predict`` call.
        progress (callable): ``progress(n_done)`` after each batch.
        writer (pspnet.evaluations.prediction_files.PredictionWriter):
            Writes each prediction (by dataset index), or None.
        after_batch (callable): ``after_batch(state)`` after each batch
            (the checkpoint), or None.
    """
    indices = list(indices)
    has_labels = getattr(dataset, 'has_labels', True)
    for start in range(state.n_done, len(indices), batchsize):
        batch = indices[start:start + batchsize]
        items = [dataset[i] for i in batch]
        pred_labels = model.predict([img for img, _ in items])
        for i, pred_label, (_, gt_label) in zip(batch, pred_labels, items):
            pred_label = chainer.backends.cuda.to_cpu(pred_label)
            if writer is not None:
                writer.write(i, pred_label)
            if not has_labels:
                continue
            state.add_image(pred_label, gt_label)
            if state.instances is not None:
                instance_ids = dataset.get_instance_ids(i)
                if instance_ids.shape != gt_label.shape:
                    raise UserError(
                        'instance image {} is {}x{} but its image is {}x{}; '
                        'use the *_instanceIds.png files of the archives'
                        .format(dataset.instance_paths[i],
                                instance_ids.shape[1], instance_ids.shape[0],
                                gt_label.shape[1], gt_label.shape[0]))
                state.instances.update(pred_label, instance_ids)
        state.n_done = start + len(batch)
        del items, pred_labels
        if after_batch is not None:
            after_batch(state)
        if progress is not None:
            progress(state.n_done)


def format_table(metrics, label_names, official=None):
    """ChainerCV's result table: one IoU line per class, then the means;
    then the benchmark's own scores, if any.

    Args:
        metrics (dict): From :func:`semantic_segmentation_metrics`.
        label_names (sequence of str): Class names, in class-id order.
        official (dict or None): From
            :func:`pspnet.evaluations.benchmark_scores.cityscapes_scores`,
            or ``{'scene_parsing_score': float}`` (ADE20K).

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
    official = official or {}
    if 'scene_parsing_score' in official:
        rows.append('=' * 34 + '\n')
        rows.append(line.format('SceneParsing score',
                                official['scene_parsing_score']))
        rows.append('(ADE20K: (pixel accuracy + mean IoU) / 2)\n')
    if 'category_iou' in official:
        rows.append('=' * 34 + ' Cityscapes\n')
        for name, value in official.get('iiou', {}).items():
            rows.append(line.format('iIoU ' + name, value))
        if 'iiou_mean' in official:
            rows.append(line.format('mean iIoU', official['iiou_mean']))
        rows.append('-' * 34 + ' categories\n')
        for name, value in official['category_iou'].items():
            rows.append(line.format('IoU ' + name, value))
        rows.append(line.format('category mean IoU',
                                official['category_miou']))
        for name, value in official.get('category_iiou', {}).items():
            rows.append(line.format('iIoU ' + name, value))
        if 'category_iiou_mean' in official:
            rows.append(line.format('category mean iIoU',
                                    official['category_iiou_mean']))
    return ''.join(rows)


def _number(value):
    value = float(value)
    return None if math.isnan(value) else value


def metrics_record(metrics, n_images, label_names, confusion, official=None):
    """Every figure as a JSON-ready dict; NaN becomes None (``null``).

    Keys: ``miou``, ``iou`` (list), ``mean_class_accuracy``,
    ``class_accuracy`` (list), ``pixel_accuracy``, ``n_images``,
    ``label_names`` and ``confusion`` (list of lists of ints). With the
    Cityscapes scores of ``official`` also ``category_miou`` and
    ``category_iou`` (dict), and with instances ``iiou`` (the mean over the
    8 classes with instances), ``class_iiou`` (dict), ``category_iiou``
    (the mean over human and vehicle) and ``category_iiou_per_category``
    (dict); with ADE20K's, ``scene_parsing_score``.
    """
    record = {
        'miou': _number(metrics['miou']),
        'iou': [_number(v) for v in metrics['iou']],
        'mean_class_accuracy': _number(metrics['mean_class_accuracy']),
        'class_accuracy': [_number(v) for v in metrics['class_accuracy']],
        'pixel_accuracy': _number(metrics['pixel_accuracy']),
        'n_images': int(n_images),
        'label_names': list(label_names),
        'confusion': np.asarray(confusion).tolist(),
    }
    official = official or {}
    if 'scene_parsing_score' in official:
        record['scene_parsing_score'] = _number(
            official['scene_parsing_score'])
    if 'category_iou' in official:
        record['category_miou'] = _number(official['category_miou'])
        record['category_iou'] = {k: _number(v) for k, v in
                                  official['category_iou'].items()}
    if 'iiou' in official:
        record['iiou'] = _number(official['iiou_mean'])
        record['class_iiou'] = {k: _number(v)
                                for k, v in official['iiou'].items()}
        record['category_iiou'] = _number(official['category_iiou_mean'])
        record['category_iiou_per_category'] = {
            k: _number(v) for k, v in official['category_iiou'].items()}
    return record


def write_json(record, path):
    """Write ``record`` to ``path`` atomically (:mod:`pspnet.atomic`)."""
    # One key per line, each value on one line.
    text = '{\n' + ',\n'.join(
        ' {}: {}'.format(json.dumps(key), json.dumps(value))
        for key, value in record.items()) + '\n}\n'
    write_atomic(path, lambda f: f.write(text.encode('utf-8')))
