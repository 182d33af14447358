"""What the three datasets share: reading images and label maps, and the
(image, label) dataset over lists of file paths."""

import os

import chainer
import cv2
import numpy as np
from PIL import Image

from pspnet.errors import UserError


def read_rgb_image(path):
    """Read an image file as a CHW RGB array.

    Args:
        path (str): Image file (JPEG, PNG, ...).

    Returns:
        numpy.ndarray: (3, H, W) float32 RGB image, values in [0, 255].

    Raises:
        UserError: The file is missing or not a readable image.
    """
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError('cannot read image {}: missing or corrupt; restore '
                        'the file from the dataset archive'.format(path))
    return bgr[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)


# PIL modes of label files: palette, 8-bit, 32-bit and 16-bit grey.
_LABEL_MODES = ('P', 'L', 'I', 'I;16')


def read_label_image(path):
    """Read a label map stored as a single-channel or palette PNG.

    The pixel values are the stored values: for palette images the palette
    indices, not their colours.

    Args:
        path (str): Label image file.

    Returns:
        numpy.ndarray: (H, W) int32 raw values (0 to 255 for 8-bit files).

    Raises:
        UserError: The file is missing, corrupt, or a colour image.
    """
    try:
        with Image.open(path) as f:
            mode = f.mode
            raw = (np.asarray(f, dtype=np.int32) if mode in _LABEL_MODES
                   else None)
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError('cannot read label image {}: missing or corrupt '
                        '({}); restore the file from the dataset archive'
                        .format(path, e))
    if raw is None:
        raise UserError(
            'label image {} is a {} image, not a single-channel or palette '
            'PNG; use the label files of the dataset archive'.format(
                path, mode))
    return raw


def require_dir(path, what, fix):
    """Raise a :class:`UserError` naming ``what`` and ``fix`` unless
    ``path`` is a folder."""
    if not os.path.isdir(path):
        raise UserError('{} folder {} does not exist; {}'.format(
            what, path, fix))


def require_files(paths, folder, pattern, fix):
    """Raise a :class:`UserError` if ``paths`` is empty."""
    if not paths:
        raise UserError('no {} files in {}; {}'.format(pattern, folder, fix))


def require_labels(img_paths, label_paths, fix):
    """Raise a :class:`UserError` for the first image without its label."""
    for img_path, label_path in zip(img_paths, label_paths):
        if not os.path.isfile(label_path):
            raise UserError('image {} has no label file {}; {}'.format(
                img_path, label_path, fix))


class SegmentationDataset(chainer.dataset.DatasetMixin):
    """Pairs of an image file and its label file.

    Each item is ``(img, label)``:

    * img: (3, H, W) float32 RGB, values in [0, 255].
    * label: (H, W) int32 class ids in [0, n_class - 1], -1 for pixels
      ignored in evaluation.

    Subclasses set ``img_paths`` and ``label_paths`` (same length, sorted)
    and convert raw label values in :meth:`convert_label`.
    """

    img_paths = ()
    label_paths = ()

    def __len__(self):
        return len(self.img_paths)

    def get_example(self, i):
        return self.get_image(i), self.get_label(i)

    def get_image(self, i):
        """The ``i``-th image, (3, H, W) float32 RGB in [0, 255]."""
        return read_rgb_image(self.img_paths[i])

    def get_label(self, i):
        """The ``i``-th label map, (H, W) int32, -1 where ignored."""
        return self.convert_label(read_label_image(self.label_paths[i]))

    def convert_label(self, raw):
        """Map the raw (H, W) int32 values of a label file to class ids."""
        raise NotImplementedError
