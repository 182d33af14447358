"""VOC 2012 augmented with the Semantic Boundaries Dataset (SBD, Hariharan
et al., ICCV 2011): the ``train_aug`` set PSPNet's VOC model was trained
on, 21 classes.

SBD (``benchmark.tgz``) re-annotates 11,355 VOC 2011 images; its
class labels are MATLAB files read with SciPy. ``train_aug`` is the union
of SBD's train and val lists and VOC 2012's segmentation train list, minus
VOC 2012's val list (so that VOC val stays unseen): 10,582 images with the
released data.
"""

import os

import numpy as np

from pspnet.datasets import base
from pspnet.datasets import voc
from pspnet.datasets.download import dataset_root
from pspnet.errors import UserError

#: SBD's archive (1.4 GB), extracted as ``benchmark_RELEASE/``.
URL = ('http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/'
       'semantic_contours/benchmark.tgz')

#: The folder ``benchmark.tgz`` extracts to.
SBD_FOLDER = 'benchmark_RELEASE'

#: SBD's image lists, under ``benchmark_RELEASE/dataset``.
SBD_SPLITS = ('train', 'val')


def default_sbd_dir(voc_dir):
    """Where SBD is looked for: ``benchmark_RELEASE`` beside the
    ``VOCdevkit`` folder that holds ``voc_dir`` (beside ``voc_dir`` itself
    when it is not inside a ``VOCdevkit``)."""
    voc_dir = os.path.abspath(voc_dir)
    parent = os.path.dirname(voc_dir)
    if os.path.basename(parent) == 'VOCdevkit':
        parent = os.path.dirname(parent)
    return os.path.join(parent, SBD_FOLDER)


def _scipy_io():
    try:
        import scipy.io
    except ImportError:
        raise UserError('reading SBD labels needs SciPy; install it with '
                        'pip install -r requirements.txt')
    return scipy.io


def read_sbd_label(path):
    """Read an SBD class label file (``dataset/cls/{id}.mat``).

    The file holds a MATLAB struct ``GTcls`` whose field ``Segmentation``
    is the label map.

    Args:
        path (str): The ``.mat`` file.

    Returns:
        numpy.ndarray: (H, W) int32 stored values (0 to 20 for the classes;
        255, if present, is ignored as in VOC).

    Raises:
        UserError: SciPy is missing, or the file is missing, corrupt or
        holds no ``GTcls.Segmentation`` map.
    """
    scipy_io = _scipy_io()
    fix = 'restore it from {}'.format(URL)
    try:
        mat = scipy_io.loadmat(path, variable_names=['GTcls'],
                               squeeze_me=True, struct_as_record=False)
    except FileNotFoundError:
        raise UserError('SBD label file {} does not exist; {}'.format(
            path, fix))
    except Exception as e:  # SciPy raises many types for damaged files
        raise UserError('cannot read SBD label file {}: truncated or corrupt '
                        '({}: {}); {}'.format(path, type(e).__name__, e, fix))
    segmentation = getattr(mat.get('GTcls'), 'Segmentation', None)
    if segmentation is None:
        raise UserError('SBD label file {} holds no GTcls.Segmentation; pass '
                        'the cls/*.mat files of {}'.format(path, URL))
    segmentation = np.asarray(segmentation)
    # SBD stores uint8; MATLAB's default double is taken when integral.
    integral = segmentation.dtype.kind in 'ui' or (
        segmentation.dtype.kind == 'f'
        and np.array_equal(segmentation, np.round(segmentation)))
    if segmentation.ndim != 2 or not integral:
        raise UserError(
            'SBD label file {}: GTcls.Segmentation is a {} array of shape {}, '
            'not an integer label map; {}'.format(
                path, segmentation.dtype, segmentation.shape, fix))
    return segmentation.astype(np.int32)


def _read_list(path, fix):
    if not os.path.isfile(path):
        raise UserError('SBD list {} does not exist; {}'.format(path, fix))
    with open(path) as f:
        ids = [line.strip() for line in f if line.strip()]
    if not ids:
        raise UserError('SBD list {} lists no images; {}'.format(path, fix))
    return ids


class VOCAugSemanticSegmentationDataset(base.SegmentationDataset):
    """VOC 2012's ``train_aug`` set: SBD's train and val images plus VOC's
    segmentation train images, without VOC's val images.

    The layout is the two archives extracted side by side::

        ROOT/VOCdevkit/VOC2012/...            (VOCtrainval_11-May-2012.tar)
        ROOT/benchmark_RELEASE/dataset/train.txt, val.txt
        ROOT/benchmark_RELEASE/dataset/cls/{id}.mat
        ROOT/benchmark_RELEASE/dataset/img/{id}.jpg

    An image that VOC 2012 annotates (its segmentation train list) takes
    VOC's label, with VOC's void borders; the others take SBD's. Images are
    read from VOC's ``JPEGImages`` (which holds every SBD image), else from
    SBD's ``img``. Items are sorted by id; every id appears once.

    Args:
        data_dir (str): As for
            :class:`~pspnet.datasets.VOCSemanticSegmentationDataset`: the
            ``VOC2012`` folder, the folder holding ``VOCdevkit``, or
            ``'auto'`` (``$CHAINER_DATASET_ROOT/pfnet/chainercv/voc``,
            where VOC is downloaded once; SBD is not).
        sbd_dir (str or None): The ``benchmark_RELEASE`` folder; by default
            beside ``VOCdevkit`` (:func:`default_sbd_dir`).

    Each item is ``(img, label)``:

    * img: (3, H, W) float32 RGB, values in [0, 255].
    * label: (H, W) int32 class ids in [0, 20], -1 where ignored (255 in
      the files).
    """

    n_class = voc.VOCSemanticSegmentationDataset.n_class
    label_values = voc.VOCSemanticSegmentationDataset.label_values

    def __init__(self, data_dir='auto', sbd_dir=None):
        if sbd_dir is None:
            # Before VOC may be downloaded: a missing SBD is found at once.
            sbd_dir = os.path.join(dataset_root('voc'), SBD_FOLDER) \
                if data_dir == 'auto' else default_sbd_dir(
                    voc.resolve_voc_dir(data_dir))
        fix = ('download {} and extract it so that {} holds dataset/cls '
               'and dataset/train.txt'.format(URL, sbd_dir))
        sbd = os.path.join(sbd_dir, 'dataset')
        if not os.path.isdir(os.path.join(sbd, 'cls')):
            raise UserError('no SBD at {} (VOC train_aug needs SBD\'s '
                            'dataset/cls labels); {}'.format(sbd_dir, fix))
        sbd_ids = set()
        for split in SBD_SPLITS:
            sbd_ids.update(_read_list(os.path.join(sbd, split + '.txt'), fix))
        voc_dir = voc.resolve_voc_dir(data_dir, 'val')
        voc_train = set(voc.read_split_ids(voc_dir, 'train'))
        voc_val = set(voc.read_split_ids(voc_dir, 'val'))
        self.ids = sorted((sbd_ids | voc_train) - voc_val)
        self.img_paths, self.label_paths = [], []
        for id_ in self.ids:
            img = os.path.join(voc_dir, 'JPEGImages', id_ + '.jpg')
            if not os.path.isfile(img):
                img = os.path.join(sbd, 'img', id_ + '.jpg')
            if not os.path.isfile(img):
                raise UserError(
                    'image {} is in neither {} nor {}; extract the VOC and '
                    'SBD archives again'.format(
                        id_ + '.jpg', os.path.join(voc_dir, 'JPEGImages'),
                        os.path.join(sbd, 'img')))
            self.img_paths.append(img)
            if id_ in voc_train:
                label = os.path.join(voc_dir, 'SegmentationClass',
                                     id_ + '.png')
            else:
                label = os.path.join(sbd, 'cls', id_ + '.mat')
            self.label_paths.append(label)
        base.require_labels(self.img_paths, self.label_paths, fix)
        if any(path.endswith('.mat') for path in self.label_paths):
            _scipy_io()  # before training starts, not at the first batch

    def get_label(self, i):
        path = self.label_paths[i]
        if not path.endswith('.mat'):
            return super(VOCAugSemanticSegmentationDataset, self).get_label(i)
        raw = read_sbd_label(path)
        label = self.convert_label(raw)
        base.check_label(label, raw, self.n_class, path, self.label_values,
                         'restore the file from {}'.format(URL))
        return label

    def convert_label(self, raw):
        return np.where(raw == 255, -1, raw).astype(np.int32)
