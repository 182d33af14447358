"""Cityscapes (https://www.cityscapes-dataset.com) semantic segmentation."""

import glob
import os

import numpy as np

from pspnet.datasets import base
from pspnet.datasets.cityscapes_labels import cityscapes_id_to_train_id
from pspnet.datasets.cityscapes_labels import cityscapes_labels
from pspnet.datasets.download import dataset_root
from pspnet.errors import UserError

_SPLITS = {'fine': ('train', 'val', 'test'),
           'coarse': ('train', 'train_extra', 'val')}

#: Largest label id of cityscapesScripts' classes (33, bicycle).
_MAX_ID = max(label.id for label in cityscapes_labels)
# Label id -> train id for every 8-bit value; ids ignored in evaluation
# -> -1; values that are no label id -> -2, which the dataset refuses.
_TRAIN_ID_LUT = np.full(256, -2, dtype=np.int32)
_TRAIN_ID_LUT[:_MAX_ID + 1] = -1
for _id, _train_id in cityscapes_id_to_train_id.items():
    _TRAIN_ID_LUT[_id] = _train_id


def _where_to_put(data_dir, label_folder):
    return ('download leftImg8bit_trainvaltest.zip and {}_trainvaltest.zip '
            '(gtCoarse.zip for coarse labels) from '
            'https://www.cityscapes-dataset.com/downloads/ and extract them '
            'so that {} and {} exist, or pass the folder holding them as '
            'data_dir (--data-dir)'.format(
                label_folder, os.path.join(data_dir, 'leftImg8bit'),
                os.path.join(data_dir, label_folder)))


class CityscapesSemanticSegmentationDataset(base.SegmentationDataset):
    """Cityscapes images with their pixel-level labels.

    The folder layout is the one of the official archives::

        data_dir/leftImg8bit/{split}/{city}/{name}_leftImg8bit.png
        data_dir/gtFine/{split}/{city}/{name}_gtFine_labelIds.png
        data_dir/gtCoarse/{split}/{city}/{name}_gtCoarse_labelIds.png

    Cityscapes may not be redistributed: download it yourself (see
    docs/datasets.md). Items are sorted by city, then by file name.

    Args:
        data_dir (str): Folder holding ``leftImg8bit`` and ``gtFine`` (or
            ``gtCoarse``); ``'auto'`` is
            ``$CHAINER_DATASET_ROOT/pfnet/chainercv/cityscapes``.
        label_resolution ({'fine', 'coarse'}): ``gtFine`` or ``gtCoarse``
            labels; None means ``'fine'``.
        split (str): ``'train'``, ``'val'`` or ``'test'`` (fine), or
            ``'train'``, ``'train_extra'`` or ``'val'`` (coarse).
        ignore_labels (bool): Map label ids to the 19 train ids, every id
            ignored in evaluation to -1 (True), or return the raw label ids
            0 to 33 (False).

    Each item is ``(img, label)``:

    * img: (3, H, W) float32 RGB, values in [0, 255].
    * label: (H, W) int32, train ids in [-1, 18] (-1: ignored), or label
      ids in [0, 33] when ``ignore_labels`` is False. The ``'test'``
      labels of the archives are placeholders: they are read as ChainerCV
      reads them where present (None where absent), but ``has_labels`` is
      False, so evaluation writes predictions only.

    Where ``*_gtFine_instanceIds.png`` files lie beside the label files,
    ``has_instances`` is True and :meth:`get_instance_ids` reads them.
    """

    def __init__(self, data_dir='auto', label_resolution=None, split='train',
                 ignore_labels=True):
        if label_resolution is None:
            label_resolution = 'fine'
        if label_resolution not in _SPLITS:
            raise UserError("label_resolution must be 'fine' or 'coarse', "
                            'not {!r}'.format(label_resolution))
        if split not in _SPLITS[label_resolution]:
            raise UserError('Cityscapes has no {!r} split with {} labels; use '
                            'one of {}'.format(
                                split, label_resolution,
                                ', '.join(_SPLITS[label_resolution])))
        if data_dir == 'auto':
            data_dir = dataset_root('cityscapes')
        label_folder = 'gtFine' if label_resolution == 'fine' else 'gtCoarse'
        fix = _where_to_put(data_dir, label_folder)
        img_dir = os.path.join(data_dir, 'leftImg8bit', split)
        label_dir = os.path.join(data_dir, label_folder, split)
        base.require_dir(img_dir, 'Cityscapes image', fix)
        # The test labels of the archives are placeholders: no labels.
        self.has_labels = split != 'test'
        if self.has_labels:
            base.require_dir(label_dir, 'Cityscapes label', fix)

        self.img_paths = sorted(glob.glob(
            os.path.join(img_dir, '*', '*_leftImg8bit.png')))
        base.require_files(self.img_paths, img_dir,
                           '{city}/*_leftImg8bit.png', fix)
        stems = [os.path.join(label_dir,
                              os.path.basename(os.path.dirname(path)),
                              os.path.basename(path)[:-len('_leftImg8bit.png')]
                              + '_' + label_folder)
                 for path in self.img_paths]
        self.label_paths = [stem + '_labelIds.png' for stem in stems]
        self.instance_paths = [stem + '_instanceIds.png' for stem in stems]
        if self.has_labels:
            base.require_labels(self.img_paths, self.label_paths, fix)
        present = [os.path.isfile(path) for path in self.instance_paths]
        #: Whether every image has its ``*_instanceIds.png`` (for the
        #: instance-level scores, :meth:`get_instance_ids`).
        self.has_instances = self.has_labels and all(present)
        if self.has_labels and any(present) and not all(present):
            missing = self.instance_paths[present.index(False)]
            raise UserError('{} is missing while other images have their '
                            'instance ids; {}'.format(missing, fix))
        self.ignore_labels = ignore_labels
        self.n_class = (len(cityscapes_id_to_train_id) if ignore_labels
                        else _MAX_ID + 1)

    def get_instance_ids(self, i):
        """The ``i``-th image's instance ids as the archives store them.

        Returns:
            numpy.ndarray: (H, W) int32: ``1000 * label id + k`` for the
            ``k``-th instance of a class with instances, the label id
            (below 1000) elsewhere.

        Raises:
            UserError: The file is missing or corrupt, or holds ids of no
            class.
        """
        path = self.instance_paths[i]
        ids = base.read_label_image(path)
        label_ids = np.where(ids >= 1000, ids // 1000, ids)
        if label_ids.size and (int(label_ids.min()) < 0
                               or int(label_ids.max()) > _MAX_ID):
            raise UserError(
                'instance image {} holds ids of no Cityscapes class (label '
                'ids 0 to {}, instances 1000 * id + k); {}'.format(
                    path, _MAX_ID, self.fix))
        return ids

    label_values = "the label ids 0 to {} of cityscapesScripts".format(
        _MAX_ID)
    fix = 'use the *_labelIds.png files of the Cityscapes archives'

    def convert_label(self, raw):
        if not self.ignore_labels:
            return raw
        return _TRAIN_ID_LUT[np.minimum(raw, 255)]
