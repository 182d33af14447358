"""Semantic segmentation metrics (ChainerCV-compatible), the benchmarks' own
scores, and the streaming, resumable evaluation of a model on a dataset."""

from pspnet.evaluations.confusion import calc_semantic_segmentation_confusion  # NOQA
from pspnet.evaluations.confusion import SemanticSegmentationConfusion  # NOQA
from pspnet.evaluations.semantic_segmentation import calc_semantic_segmentation_iou  # NOQA
from pspnet.evaluations.semantic_segmentation import eval_semantic_segmentation  # NOQA
from pspnet.evaluations.semantic_segmentation import semantic_segmentation_metrics  # NOQA
from pspnet.evaluations.evaluator import evaluate_model  # NOQA
from pspnet.evaluations.evaluator import format_table  # NOQA
from pspnet.evaluations.evaluator import run_evaluation  # NOQA
from pspnet.evaluations.benchmark_scores import cityscapes_scores  # NOQA
from pspnet.evaluations.benchmark_scores import InstanceIoUAccumulator  # NOQA
from pspnet.evaluations.benchmark_scores import scene_parsing_score  # NOQA
from pspnet.evaluations.checkpoints import EvaluationState  # NOQA
