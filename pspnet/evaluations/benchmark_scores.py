"""The benchmarks' own scores besides ChainerCV's: Cityscapes' instance-level
iIoU and its category scores, and the ADE20K SceneParsing score.

Cityscapes (the definitions of cityscapesScripts'
``evalPixelLevelSemanticLabeling``, computed here over train ids):

* IoU of a class: ChainerCV's IoU.
* iIoU of a class with instances (person, rider, car, truck, bus, train,
  motorcycle, bicycle): every ground truth instance (an id ``1000 * label
  id + k`` above 1000 in ``*_gtFine_instanceIds.png``) weights its pixels
  by ``a / s``, ``s`` its size in pixels and ``a`` the benchmark's average
  size of its class's instances (:data:`CITYSCAPES_AVERAGE_INSTANCE_SIZE`);
  ``iIoU = TP_w / (TP_w + FP + FN_w)`` with the weighted true positives
  and false negatives summed over the instances and the plain false
  positives (pixels of other evaluated classes predicted as the class).
* Category IoU and iIoU: the same over the 7 categories (flat,
  construction, object, nature, sky, human, vehicle), a pixel counting
  as right when its predicted class is in its category; iIoU for the two
  categories whose classes all have instances (human, vehicle).
* Means leave NaN (classes or categories with nothing to count) out.

ADE20K: the SceneParsing benchmark ranks by ``(pixel accuracy + mean
IoU) / 2``.

Only per-class sums are kept (:class:`InstanceIoUAccumulator`), so memory
does not grow with the number of images.
"""

import warnings

import numpy as np

from pspnet.datasets.cityscapes_labels import cityscapes_labels
from pspnet.datasets.cityscapes_labels import cityscapes_semantic_segmentation_label_names  # NOQA

#: Average size in pixels of the instances of each class, the weights of
#: cityscapesScripts' evaluation (``args.avgClassSize``).
CITYSCAPES_AVERAGE_INSTANCE_SIZE = {
    'bicycle': 4672.3249222261,
    'caravan': 36771.8241758242,
    'motorcycle': 6298.7200839748,
    'rider': 3930.4788056518,
    'bus': 35732.1511111111,
    'train': 67583.7075812274,
    'car': 12794.0202738185,
    'person': 3462.4756337644,
    'truck': 27855.1264367816,
    'trailer': 16926.9763313609,
}

_EVALUATED = [label for label in cityscapes_labels if not label.ignore_in_eval]
_N_CLASS = len(_EVALUATED)

#: The 7 categories of evaluated classes, in cityscapesScripts' order.
CITYSCAPES_CATEGORIES = tuple(dict.fromkeys(
    label.category for label in cityscapes_labels
    if not label.ignore_in_eval))
#: Train ids of each category's evaluated classes.
_CATEGORY_TRAIN_IDS = {
    category: [label.train_id for label in _EVALUATED
               if label.category == category]
    for category in CITYSCAPES_CATEGORIES}
#: Categories whose every class (with a label id) has instances.
CITYSCAPES_INSTANCE_CATEGORIES = tuple(
    category for category in CITYSCAPES_CATEGORIES
    if all(label.has_instances for label in cityscapes_labels
           if label.category == category and label.id >= 0))
#: Train ids of the evaluated classes with instances.
CITYSCAPES_INSTANCE_TRAIN_IDS = tuple(
    label.train_id for label in sorted(_EVALUATED,
                                       key=lambda label: label.train_id)
    if label.has_instances)

_MAX_ID = max(label.id for label in cityscapes_labels)
# Label id -> train id (-1: not evaluated), category index (-1: none with
# instance scores), weight numerator (the average instance size).
_TRAIN_ID = np.full(_MAX_ID + 1, -1, dtype=np.int64)
_AVERAGE_SIZE = np.zeros(_MAX_ID + 1, dtype=np.float64)
for _label in _EVALUATED:
    _TRAIN_ID[_label.id] = _label.train_id
    if _label.has_instances:
        _AVERAGE_SIZE[_label.id] = CITYSCAPES_AVERAGE_INSTANCE_SIZE[
            _label.name]
# Train id -> index in CITYSCAPES_INSTANCE_CATEGORIES, -1 elsewhere.
_INSTANCE_CATEGORY = np.full(_N_CLASS, -1, dtype=np.int64)
for _k, _category in enumerate(CITYSCAPES_INSTANCE_CATEGORIES):
    _INSTANCE_CATEGORY[_CATEGORY_TRAIN_IDS[_category]] = _k


class InstanceIoUAccumulator(object):
    """Weighted true positives and false negatives of ground truth
    instances, added image by image (Cityscapes' iIoU).

    Attributes:
        class_sums (numpy.ndarray): (19, 2) float64: per train id, the
            weighted true positives and false negatives (zero for classes
            without instances).
        category_sums (numpy.ndarray): (2, 2) float64: the same per
            category of :data:`CITYSCAPES_INSTANCE_CATEGORIES`.
    """

    def __init__(self):
        self.class_sums = np.zeros((_N_CLASS, 2), dtype=np.float64)
        self.category_sums = np.zeros(
            (len(CITYSCAPES_INSTANCE_CATEGORIES), 2), dtype=np.float64)

    def update(self, pred_label, instance_ids):
        """Count the instances of one image.

        Args:
            pred_label (numpy.ndarray): (H, W) int predicted train ids in
                [0, 18].
            instance_ids (numpy.ndarray): (H, W) int the values of its
                ``*_gtFine_instanceIds.png``: ``1000 * label id + k`` for
                instances, label ids 0 to 33 elsewhere.
        """
        pred_label = np.asarray(pred_label)
        instance_ids = np.asarray(instance_ids)
        if pred_label.shape != instance_ids.shape:
            raise ValueError('prediction shape {} differs from instance map '
                             'shape {}'.format(pred_label.shape,
                                               instance_ids.shape))
        selected = instance_ids > 1000
        ids = instance_ids[selected].astype(np.int64)
        if ids.size == 0:
            return
        pred = pred_label[selected].astype(np.int64)
        instances, inverse = np.unique(ids, return_inverse=True)
        label_ids = instances // 1000
        train_ids = _TRAIN_ID[label_ids]
        sizes = np.bincount(inverse, minlength=len(instances))
        hits = np.bincount(inverse[pred == train_ids[inverse]],
                           minlength=len(instances))
        categories = _INSTANCE_CATEGORY[np.maximum(train_ids, 0)]
        categories[train_ids < 0] = -1
        category_hits = np.bincount(
            inverse[_INSTANCE_CATEGORY[pred] == categories[inverse]],
            minlength=len(instances))
        # One instance at a time in id order, as cityscapesScripts adds
        # them (the same float sums).
        for k in range(len(instances)):
            train_id = int(train_ids[k])
            if train_id < 0:
                continue  # a class ignored in evaluation (caravan, ...)
            size = int(sizes[k])
            weight = _AVERAGE_SIZE[label_ids[k]] / float(size)
            tp = int(hits[k])
            self.class_sums[train_id, 0] += float(tp) * weight
            self.class_sums[train_id, 1] += float(size - tp) * weight
            category = int(categories[k])
            if category >= 0:
                tp = int(category_hits[k])
                self.category_sums[category, 0] += float(tp) * weight
                self.category_sums[category, 1] += float(size - tp) * weight


def _ratio(numerator, denominator):
    return float(numerator) / denominator if denominator else float('nan')


def _nanmean(values):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        return float(np.nanmean(np.asarray(values, dtype=np.float64)))


def cityscapes_scores(confusion, instances=None):
    """Cityscapes' class and category scores.

    Args:
        confusion (numpy.ndarray): (19, 19) int confusion matrix over train
            ids (rows ground truth, columns prediction).
        instances (InstanceIoUAccumulator or None): The instance sums; None
            leaves the iIoU figures out.

    Returns:
        dict: ``miou`` (float), ``category_iou`` (dict category -> float),
        ``category_miou`` (float); with ``instances`` also ``iiou`` (dict
        class name -> float, the 8 classes with instances), ``iiou_mean``
        (float, their mean: ``iiou`` in the script's JSON) and
        ``category_iiou`` (dict, human and vehicle) and
        ``category_iiou_mean``. Values in [0, 1] or NaN.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(confusion)
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = tp / (confusion.sum(0) + confusion.sum(1) - tp)
    scores = {'miou': _nanmean(iou), 'category_iou': {}}
    for category in CITYSCAPES_CATEGORIES:
        ids = _CATEGORY_TRAIN_IDS[category]
        others = [c for c in range(_N_CLASS) if c not in ids]
        c_tp = int(confusion[np.ix_(ids, ids)].sum())
        c_fn = int(confusion[ids].sum()) - c_tp
        c_fp = int(confusion[np.ix_(others, ids)].sum())
        scores['category_iou'][category] = _ratio(c_tp, c_tp + c_fp + c_fn)
    scores['category_miou'] = _nanmean(list(scores['category_iou'].values()))
    if instances is None:
        return scores
    names = cityscapes_semantic_segmentation_label_names
    scores['iiou'] = {}
    for train_id in CITYSCAPES_INSTANCE_TRAIN_IDS:
        tp_w, fn_w = instances.class_sums[train_id]
        fp = int(confusion[:, train_id].sum()) - int(tp[train_id])
        scores['iiou'][names[train_id]] = _ratio(tp_w, tp_w + fp + fn_w)
    scores['iiou_mean'] = _nanmean(list(scores['iiou'].values()))
    scores['category_iiou'] = {}
    for k, category in enumerate(CITYSCAPES_INSTANCE_CATEGORIES):
        ids = _CATEGORY_TRAIN_IDS[category]
        others = [c for c in range(_N_CLASS) if c not in ids]
        tp_w, fn_w = instances.category_sums[k]
        fp = int(confusion[np.ix_(others, ids)].sum())
        scores['category_iiou'][category] = _ratio(tp_w, tp_w + fp + fn_w)
    scores['category_iiou_mean'] = _nanmean(
        list(scores['category_iiou'].values()))
    return scores


def scene_parsing_score(metrics):
    """The ADE20K SceneParsing score, ``(pixel accuracy + mean IoU) / 2``.

    Args:
        metrics (dict): From
            :func:`pspnet.evaluations.semantic_segmentation_metrics`.

    Returns:
        float: In [0, 1] or NaN. (The devkit counts a class found in
        neither prediction nor ground truth as IoU 0 where this mean leaves
        it out; on the 2,000 validation images every class is present.)
    """
    return (float(metrics['pixel_accuracy']) + float(metrics['miou'])) / 2
