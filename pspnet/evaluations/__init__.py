"""Semantic segmentation metrics (ChainerCV-compatible) and the streaming
evaluation of a model on a dataset."""

from pspnet.evaluations.confusion import calc_semantic_segmentation_confusion  # NOQA
from pspnet.evaluations.confusion import SemanticSegmentationConfusion  # NOQA
from pspnet.evaluations.semantic_segmentation import calc_semantic_segmentation_iou  # NOQA
from pspnet.evaluations.semantic_segmentation import eval_semantic_segmentation  # NOQA
from pspnet.evaluations.semantic_segmentation import semantic_segmentation_metrics  # NOQA
from pspnet.evaluations.evaluator import evaluate_model  # NOQA
from pspnet.evaluations.evaluator import format_table  # NOQA
