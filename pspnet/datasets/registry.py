"""The datasets by the names the scripts use (``--dataset``)."""

from pspnet.datasets.ade20k import ADE20KSemanticSegmentationDataset
from pspnet.datasets.ade20k_labels import ade20k_semantic_segmentation_label_colors  # NOQA
from pspnet.datasets.ade20k_labels import ade20k_semantic_segmentation_label_names  # NOQA
from pspnet.datasets.cityscapes import CityscapesSemanticSegmentationDataset
from pspnet.datasets.cityscapes_labels import cityscapes_semantic_segmentation_label_colors  # NOQA
from pspnet.datasets.cityscapes_labels import cityscapes_semantic_segmentation_label_names  # NOQA
from pspnet.datasets.voc import VOCSemanticSegmentationDataset
from pspnet.datasets.voc_labels import voc_semantic_segmentation_label_colors  # NOQA
from pspnet.datasets.voc_labels import voc_semantic_segmentation_label_names  # NOQA
from pspnet.errors import UserError

#: name -> (dataset class, label names, label colours).
DATASETS = {
    'cityscapes': (CityscapesSemanticSegmentationDataset,
                   cityscapes_semantic_segmentation_label_names,
                   cityscapes_semantic_segmentation_label_colors),
    'ade20k': (ADE20KSemanticSegmentationDataset,
               ade20k_semantic_segmentation_label_names,
               ade20k_semantic_segmentation_label_colors),
    'voc': (VOCSemanticSegmentationDataset,
            voc_semantic_segmentation_label_names,
            voc_semantic_segmentation_label_colors),
}


def _entry(name):
    if name not in DATASETS:
        raise UserError('unknown dataset {!r}; choose one of {}'.format(
            name, ', '.join(sorted(DATASETS))))
    return DATASETS[name]


def get_dataset(name, split, data_dir='auto'):
    """The ``split`` of dataset ``name`` (fine labels for Cityscapes).

    Args:
        name (str): ``'cityscapes'``, ``'ade20k'`` or ``'voc'``.
        split (str): ``'train'``, ``'val'``, ... (see each dataset).
        data_dir (str): Dataset folder, or ``'auto'``.

    Returns:
        pspnet.datasets.SegmentationDataset: Items ``(img, label)``.
    """
    cls = _entry(name)[0]
    if name == 'cityscapes':
        return cls(data_dir=data_dir, label_resolution='fine', split=split)
    return cls(data_dir=data_dir, split=split)


def get_label_names(name):
    """Class names of dataset ``name``, a tuple of str in class-id order."""
    return _entry(name)[1]


def get_label_colors(name):
    """(R, G, B) class colours of dataset ``name``, in class-id order."""
    return _entry(name)[2]
