"""ADE20K as released for the MIT Scene Parsing Benchmark
(http://sceneparsing.csail.mit.edu), 150 classes."""

import glob
import os

import numpy as np

from pspnet.datasets import base
from pspnet.datasets.ade20k_labels import ade20k_semantic_segmentation_label_names  # NOQA
from pspnet.datasets.download import dataset_root
from pspnet.datasets.download import fetch_dataset
from pspnet.errors import UserError

#: The benchmark's training and validation archive (923 MB).
URL = 'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip'
#: The benchmark's test images (3,352, no labels).
TEST_URL = 'http://data.csail.mit.edu/places/ADEchallenge/release_test.zip'

_FOLDERS = {'train': 'training', 'val': 'validation'}
#: The split of the test images, named after their archive.
TEST_SPLIT = 'release_test'


class ADE20KSemanticSegmentationDataset(base.SegmentationDataset):
    """ADE20K images (20,210 train, 2,000 val) with their labels.

    The folder layout is the one of ``ADEChallengeData2016.zip`` and, for
    the test images (``split='release_test'``), of ``release_test.zip``
    extracted beside it or into it::

        data_dir/ADEChallengeData2016/images/{training,validation}/*.jpg
        data_dir/ADEChallengeData2016/annotations/{training,validation}/*.png
        data_dir/release_test/testing/*.jpg

    Items are sorted by file name.

    Args:
        data_dir (str): Folder holding ``ADEChallengeData2016`` (or that
            folder itself); ``'auto'`` downloads the archive once into
            ``$CHAINER_DATASET_ROOT/pfnet/chainercv/ade20k``.
        split ({'train', 'val', 'release_test'}): Training, validation or
            test images.

    Each item is ``(img, label)``:

    * img: (3, H, W) float32 RGB, values in [0, 255].
    * label: (H, W) int32 class ids in [0, 149], -1 for the unlabelled
      pixels (0 in the files); None for ``'release_test'``
      (``has_labels`` False).
    """

    def __init__(self, data_dir='auto', split='train'):
        if split == TEST_SPLIT:
            self._read_test(data_dir)
            return
        if split not in _FOLDERS:
            raise UserError("ADE20K has no {!r} split; use 'train', 'val' or "
                            "'{}'".format(split, TEST_SPLIT))
        if data_dir == 'auto':
            data_dir = fetch_dataset(
                'ade20k', URL, lambda root: os.path.isdir(
                    os.path.join(root, 'ADEChallengeData2016')))
        root = os.path.join(data_dir, 'ADEChallengeData2016')
        if not os.path.isdir(root) and os.path.isdir(
                os.path.join(data_dir, 'images')):
            root = data_dir
        fix = ('extract ADEChallengeData2016.zip from {} into {}, or pass '
               "data_dir='auto' to download it".format(URL, data_dir))
        img_dir = os.path.join(root, 'images', _FOLDERS[split])
        label_dir = os.path.join(root, 'annotations', _FOLDERS[split])
        base.require_dir(img_dir, 'ADE20K image', fix)
        base.require_dir(label_dir, 'ADE20K annotation', fix)

        self.img_paths = sorted(glob.glob(os.path.join(img_dir, '*.jpg')))
        base.require_files(self.img_paths, img_dir, '*.jpg', fix)
        self.label_paths = [
            os.path.join(label_dir,
                         os.path.splitext(os.path.basename(path))[0] + '.png')
            for path in self.img_paths]
        base.require_labels(self.img_paths, self.label_paths, fix)

    def _read_test(self, data_dir):
        if data_dir == 'auto':
            data_dir = dataset_root('ade20k')
        candidates = [os.path.join(data_dir, 'release_test', 'testing'),
                      os.path.join(data_dir, 'ADEChallengeData2016',
                                   'release_test', 'testing'),
                      os.path.join(data_dir, 'testing')]
        img_dir = next((c for c in candidates if os.path.isdir(c)),
                       candidates[0])
        fix = ('extract release_test.zip from {} into {} (the test images '
               'are not downloaded automatically)'.format(TEST_URL, data_dir))
        base.require_dir(img_dir, 'ADE20K test image', fix)
        self.img_paths = sorted(glob.glob(os.path.join(img_dir, '*.jpg')))
        base.require_files(self.img_paths, img_dir, '*.jpg', fix)
        self.label_paths = [None] * len(self.img_paths)
        self.has_labels = False

    n_class = len(ade20k_semantic_segmentation_label_names)
    label_values = '0 for other, 1 to {} for the classes'.format(n_class)

    def convert_label(self, raw):
        return (raw - 1).astype(np.int32)
