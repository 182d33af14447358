"""What a dataset is, and the datasets by the names the scripts use.

A :class:`~pspnet.datasets.spec.DatasetSpec` holds every fact the scripts, the link, training,
the converter and the pictures need about a dataset: its classes (names
and colours), how to read its splits, the input size PSPNet uses for it
(inference input and training crop), the published training recipe's
iterations and the published weights per depth. :data:`DATASETS` holds
Cityscapes, ADE20K and VOC; :func:`lookup` finds one by name. This module
is the only place these facts are written.

Weights are ChainerCV 0.13.1's published files, downloaded once into
Chainer's dataset cache (:mod:`pspnet.pretrained`).
"""

import collections

from pspnet.datasets.ade20k import ADE20KSemanticSegmentationDataset
from pspnet.datasets.ade20k_labels import ade20k_semantic_segmentation_label_colors  # NOQA
from pspnet.datasets.ade20k_labels import ade20k_semantic_segmentation_label_names  # NOQA
from pspnet.datasets import description
from pspnet.datasets.spec import DatasetSpec
from pspnet.datasets.cityscapes import CityscapesSemanticSegmentationDataset
from pspnet.datasets.cityscapes_labels import cityscapes_semantic_segmentation_label_colors  # NOQA
from pspnet.datasets.cityscapes_labels import cityscapes_semantic_segmentation_label_names  # NOQA
from pspnet.datasets.sbd import VOCAugSemanticSegmentationDataset
from pspnet.datasets.voc import VOCSemanticSegmentationDataset
from pspnet.datasets.voc_labels import voc_semantic_segmentation_label_colors  # NOQA
from pspnet.datasets.voc_labels import voc_semantic_segmentation_label_names  # NOQA
from pspnet.errors import UserError

_URL_ROOT = 'https://chainercv-models.preferred.jp/'

#: ChainerCV's ImageNet-trained extractors (no classifier), per depth.
EXTRACTOR_WEIGHTS = {
    50: _URL_ROOT + 'pspnet_resnet50_imagenet_trained_2018_11_26.npz',
    101: _URL_ROOT + 'pspnet_resnet101_imagenet_trained_2018_11_26.npz',
}

#: Name of the extractor weights where a preset name is expected.
EXTRACTOR_PRESET = 'imagenet'


DATASETS = collections.OrderedDict((spec.name, spec) for spec in (
    DatasetSpec(
        name='cityscapes',
        label_names=cityscapes_semantic_segmentation_label_names,
        label_colors=cityscapes_semantic_segmentation_label_colors,
        reader=lambda split, data_dir: CityscapesSemanticSegmentationDataset(
            data_dir=data_dir, label_resolution='fine', split=split),
        input_size=713,
        iterations=90000,
        weights={
            50: _URL_ROOT
            + 'pspnet_resnet50_cityscapes_trained_2018_12_19.npz',
            101: _URL_ROOT
            + 'pspnet_resnet101_cityscapes_trained_2018_12_19.npz'},
        benchmark='cityscapes', test_split='test'),
    DatasetSpec(
        name='ade20k',
        label_names=ade20k_semantic_segmentation_label_names,
        label_colors=ade20k_semantic_segmentation_label_colors,
        reader=lambda split, data_dir: ADE20KSemanticSegmentationDataset(
            data_dir=data_dir, split=split),
        input_size=473,
        iterations=150000,
        weights={
            50: _URL_ROOT + 'pspnet_resnet50_ade20k_trained_2018_12_23.npz',
            101: _URL_ROOT
            + 'pspnet_resnet101_ade20k_trained_2018_12_23.npz'},
        benchmark='ade20k', test_split='release_test'),
    DatasetSpec(
        name='voc',
        label_names=voc_semantic_segmentation_label_names,
        label_colors=voc_semantic_segmentation_label_colors,
        reader=lambda split, data_dir: (
            VOCAugSemanticSegmentationDataset(data_dir=data_dir)
            if split == 'train_aug' else VOCSemanticSegmentationDataset(
                data_dir=data_dir, split=split)),
        input_size=473,
        # PSPNet's paper (Zhao et al. 2017, section 5.1): 30K iterations at
        # batch 16 for PASCAL VOC (hszhao/semseg's voc2012 configs: 50
        # epochs of train_aug at batch 16, 33K).
        iterations=30000,
        weights={},
        train_split='train_aug', benchmark='voc', test_split='test'),
))


def lookup(name):
    """The dataset called ``name`` (a :class:`DatasetSpec` passes through);
    a path ending in ``.json`` is a user's dataset description
    (:func:`pspnet.datasets.description.load_description`).

    Raises:
        UserError: No dataset of that name.
    """
    if isinstance(name, DatasetSpec):
        return name
    if description.is_description_path(name):
        return description.load_description(name)
    if name not in DATASETS:
        raise UserError('unknown dataset {!r}; choose one of {} or pass a '
                        'dataset description PATH.json'.format(
                            name, ', '.join(DATASETS)))
    return DATASETS[name]


def dataset_of_n_class(n_class):
    """The dataset with ``n_class`` classes, or None."""
    for spec in DATASETS.values():
        if spec.n_class == n_class:
            return spec
    return None


def weight_presets(n_layer):
    """The preset names of ``pretrained_model`` for a depth: the datasets
    with published weights, then ``'imagenet'``."""
    return [name for name, spec in DATASETS.items()
            if n_layer in spec.weights] + [EXTRACTOR_PRESET]


def get_dataset(name, split, data_dir='auto'):
    """The ``split`` of dataset ``name`` (fine labels for Cityscapes).

    Returns:
        pspnet.datasets.SegmentationDataset: Items ``(img, label)``.
    """
    return lookup(name).get(split, data_dir)


def get_label_names(name):
    """Class names of dataset ``name``, a tuple of str in class-id order."""
    return lookup(name).label_names


def get_label_colors(name):
    """(R, G, B) class colours of dataset ``name``, in class-id order."""
    return lookup(name).label_colors
