"""Semantic segmentation datasets in their published on-disk layouts, with
their class names and colours, under ChainerCV's names."""

from pspnet.datasets.ade20k_labels import ade20k_semantic_segmentation_label_colors  # NOQA
from pspnet.datasets.ade20k_labels import ade20k_semantic_segmentation_label_names  # NOQA
from pspnet.datasets.cityscapes_labels import cityscapes_id_to_train_id  # NOQA
from pspnet.datasets.cityscapes_labels import cityscapes_labels  # NOQA
from pspnet.datasets.cityscapes_labels import cityscapes_semantic_segmentation_label_colors  # NOQA
from pspnet.datasets.cityscapes_labels import cityscapes_semantic_segmentation_label_names  # NOQA
from pspnet.datasets.voc_labels import voc_palette  # NOQA
from pspnet.datasets.voc_labels import voc_semantic_segmentation_ignore_label_color  # NOQA
from pspnet.datasets.voc_labels import voc_semantic_segmentation_label_colors  # NOQA
from pspnet.datasets.voc_labels import voc_semantic_segmentation_label_names  # NOQA

from pspnet.datasets.ade20k import ADE20KSemanticSegmentationDataset  # NOQA
from pspnet.datasets.base import SegmentationDataset  # NOQA
from pspnet.datasets.cityscapes import CityscapesSemanticSegmentationDataset  # NOQA
from pspnet.datasets.sbd import VOCAugSemanticSegmentationDataset  # NOQA
from pspnet.datasets.voc import VOCSemanticSegmentationDataset  # NOQA
from pspnet.datasets.registry import DATASETS  # NOQA
from pspnet.datasets.registry import get_dataset  # NOQA
from pspnet.datasets.registry import get_label_colors  # NOQA
from pspnet.datasets.registry import get_label_names  # NOQA
