"""PASCAL VOC 2012 (http://host.robots.ox.ac.uk/pascal/VOC/voc2012/)
semantic segmentation, 21 classes."""

import os

import numpy as np

from pspnet.datasets import base
from pspnet.datasets.voc_labels import voc_semantic_segmentation_label_names  # NOQA
from pspnet.datasets.download import dataset_root
from pspnet.datasets.download import fetch_dataset
from pspnet.errors import UserError

#: The VOC 2012 training and validation archive (1.9 GB).
URL = ('http://host.robots.ox.ac.uk/pascal/VOC/voc2012/'
       'VOCtrainval_11-May-2012.tar')

_SPLITS = ('train', 'val', 'trainval', 'test')
#: The test images and list (no labels), from the evaluation server.
TEST_ARCHIVE = 'VOC2012test.tar'
_DEVKIT = os.path.join('VOCdevkit', 'VOC2012')


def _split_file(voc_dir, split):
    return os.path.join(voc_dir, 'ImageSets', 'Segmentation', split + '.txt')


#: What to do about a missing or incomplete VOC folder.
FIX = ('extract VOCtrainval_11-May-2012.tar from {} and pass its '
       "VOCdevkit/VOC2012 folder as data_dir, or data_dir='auto' to "
       'download it'.format(URL))
#: The same for the test split.
TEST_FIX = ('extract {} (from the VOC evaluation server, after registering) '
            'and pass its VOCdevkit/VOC2012 folder as data_dir'.format(
                TEST_ARCHIVE))


def resolve_voc_dir(data_dir, split='train'):
    """The ``VOC2012`` folder meant by ``data_dir``: itself, its
    ``VOCdevkit/VOC2012``, or (``'auto'``) the downloaded one (the archive
    is fetched once when ``split``'s list is missing)."""
    if data_dir == 'auto':
        return os.path.join(fetch_dataset(
            'voc', URL, lambda root: os.path.isfile(
                _split_file(os.path.join(root, _DEVKIT), split))),
            _DEVKIT)
    if (not os.path.isdir(os.path.join(data_dir, 'ImageSets'))
            and os.path.isdir(os.path.join(data_dir, _DEVKIT))):
        return os.path.join(data_dir, _DEVKIT)
    return data_dir


def read_split_ids(voc_dir, split, fix=FIX):
    """The image ids of ``ImageSets/Segmentation/{split}.txt``, in file
    order (``fix``: what to do when it is missing, for the message).

    Raises:
        UserError: The list is missing or empty.
    """
    split_file = _split_file(voc_dir, split)
    if not os.path.isfile(split_file):
        raise UserError('VOC split file {} does not exist; {}'.format(
            split_file, fix))
    with open(split_file) as f:
        ids = [line.strip() for line in f if line.strip()]
    if not ids:
        raise UserError('VOC split file {} lists no images; {}'.format(
            split_file, fix))
    return ids


class VOCSemanticSegmentationDataset(base.SegmentationDataset):
    """VOC 2012 images with their segmentation labels.

    The folder layout is the one of ``VOCtrainval_11-May-2012.tar``::

        data_dir/ImageSets/Segmentation/{train,val,trainval}.txt
        data_dir/JPEGImages/{id}.jpg
        data_dir/SegmentationClass/{id}.png   (palette PNG)

    Items are in the order of the split file (sorted in the release).

    Args:
        data_dir (str): The ``VOC2012`` folder (or a folder holding
            ``VOCdevkit/VOC2012``); ``'auto'`` downloads the archive once
            into ``$CHAINER_DATASET_ROOT/pfnet/chainercv/voc``.
        split ({'train', 'val', 'trainval', 'test'}): Image list to use;
            ``'test'`` is the list of ``VOC2012test.tar`` (from the
            evaluation server, not downloaded here), without labels.

    Each item is ``(img, label)``:

    * img: (3, H, W) float32 RGB, values in [0, 255].
    * label: (H, W) int32 class ids in [0, 20], -1 for the borders and
      difficult regions (255 in the files); None for ``'test'``
      (``has_labels`` False).
    """

    def __init__(self, data_dir='auto', split='train'):
        if split not in _SPLITS:
            raise UserError('VOC has no {!r} split; use one of {}'.format(
                split, ', '.join(_SPLITS)))
        self.has_labels = split != 'test'
        fix = FIX if self.has_labels else TEST_FIX
        if data_dir == 'auto' and not self.has_labels:
            # The test archive comes from the evaluation server only.
            data_dir = os.path.join(dataset_root('voc'), _DEVKIT)
        else:
            data_dir = resolve_voc_dir(data_dir, split)
        split_file = _split_file(data_dir, split)
        self.ids = read_split_ids(data_dir, split, fix)
        self.img_paths = [os.path.join(data_dir, 'JPEGImages', id_ + '.jpg')
                          for id_ in self.ids]
        self.label_paths = [
            os.path.join(data_dir, 'SegmentationClass', id_ + '.png')
            for id_ in self.ids]
        for img_path in self.img_paths:
            if not os.path.isfile(img_path):
                raise UserError('image {} listed in {} does not exist; {}'
                                .format(img_path, split_file, fix))
        if self.has_labels:
            base.require_labels(self.img_paths, self.label_paths, fix)

    n_class = len(voc_semantic_segmentation_label_names)
    label_values = '0 to {} for the classes, 255 for borders'.format(
        n_class - 1)

    def convert_label(self, raw):
        return np.where(raw == 255, -1, raw).astype(np.int32)
