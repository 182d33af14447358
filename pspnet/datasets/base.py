"""What the three datasets share: reading images and label maps, and the
(image, label) dataset over lists of file paths."""

import os

import chainer
import cv2
import numpy as np
from PIL import Image

from pspnet.errors import UserError
from pspnet.image_io import decode_image_file


def read_rgb_image(path):
    """Read an image file as a CHW RGB array, as ChainerCV reads dataset
    images (OpenCV's ``IMREAD_COLOR``: grey repeated, alpha dropped, the
    EXIF orientation applied).

    Args:
        path (str): Image file (JPEG, PNG, ...).

    Returns:
        numpy.ndarray: (3, H, W) float32 RGB image, values in [0, 255].

    Raises:
        UserError: The file is missing, truncated, corrupt or not an image.
    """
    bgr = decode_image_file(path, cv2.IMREAD_COLOR,
                            'restore the file from the dataset archive')
    return bgr[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)


# PIL modes of label files: palette, 8-bit, 32-bit and 16-bit grey.
LABEL_MODES = ('P', 'L', 'I', 'I;16')


def image_header(path):
    """((width, height), mode) from an image file's header (Pillow reads
    no pixels), or None when Pillow cannot tell (unreadable files are
    reported, with their own message, when they are read)."""
    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except Exception:
        return None


def check_label_size(label_path, label_size, img_path, img_size, fix):
    """Refuse a label map whose size is not its image's.

    Args:
        label_path, img_path (str): The two files, for the message.
        label_size, img_size (tuple of ints): (width, height) of each.
        fix (str): What to do about it, for the message.

    Raises:
        UserError: The sizes differ.
    """
    if tuple(label_size) != tuple(img_size):
        raise UserError(
            'label image {} is {}x{} but its image {} is {}x{}; each label '
            'map must have its image\'s size ({})'.format(
                label_path, label_size[0], label_size[1], img_path,
                img_size[0], img_size[1], fix))


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
            raw = (np.asarray(f, dtype=np.int32) if mode in LABEL_MODES
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


def check_label(label, raw, n_class, path, allowed, fix):
    """Refuse a label map with values that are neither a class nor
    ignored, naming the file and the stored value.

    Args:
        label (numpy.ndarray): (H, W) int32 converted ids; valid ones lie in
            [-1, ``n_class``).
        raw (numpy.ndarray): (H, W) the values stored in the file.
        n_class (int): Number of classes.
        path (str): The label file.
        allowed (str): The values the file may hold, for the message.
        fix (str): What to do.

    Raises:
        UserError: Some pixel's id is out of range.
    """
    bad = (label < -1) | (label >= n_class)
    if bad.any():
        values = np.unique(raw[bad])
        raise UserError(
            'label image {} holds {} {} ({} pixels), which {} no class id nor '
            'the ignore value of this dataset (it may hold {}); {}'.format(
                path, 'the value' if len(values) == 1 else 'the values',
                ', '.join(str(v) for v in values[:5])
                + (', ...' if len(values) > 5 else ''), int(bad.sum()),
                'is' if len(values) == 1 else 'are', allowed, fix))


class SegmentationDataset(chainer.dataset.DatasetMixin):
    """Pairs of an image file and its label file.

    Each item is ``(img, label)``:

    * img: (3, H, W) float32 RGB, values in [0, 255].
    * label: (H, W) int32 class ids in [0, n_class - 1], -1 for pixels
      ignored in evaluation; None for splits without label files
      (``has_labels`` False: the benchmarks' test sets; where a test set
      ships placeholder label files, Cityscapes', they are read as
      ChainerCV reads them, and evaluation still uses none).

    Label maps whose size differs from their image's, or that hold values
    which are neither a class nor ignored, raise a
    :class:`~pspnet.errors.UserError` naming the file.

    Subclasses set ``img_paths`` and ``label_paths`` (same length, sorted),
    ``n_class``, ``label_values`` and ``fix``, and convert raw label values
    in :meth:`convert_label`, giving values outside [-1, n_class) to the
    raw values that are not allowed.
    """

    img_paths = ()
    label_paths = ()
    #: False for splits released without labels (test sets): evaluation
    #: writes predictions only.
    has_labels = True
    #: Number of classes of the items' label maps.
    n_class = None
    #: The values a label file may hold, for messages.
    label_values = ''
    #: What to do about a damaged file, for messages.
    fix = 'restore the file from the dataset archive'

    def __len__(self):
        return len(self.img_paths)

    def get_example(self, i):
        if not self.has_labels and not (
                self.label_paths[i] is not None
                and os.path.isfile(self.label_paths[i])):
            return self.get_image(i), None
        img, label = self.get_image(i), self.get_label(i)
        check_label_size(self.label_paths[i], label.shape[::-1],
                         self.img_paths[i], img.shape[:0:-1], self.fix)
        return img, label

    def get_image(self, i):
        """The ``i``-th image, (3, H, W) float32 RGB in [0, 255]."""
        return read_rgb_image(self.img_paths[i])

    def get_label(self, i):
        """The ``i``-th label map, (H, W) int32, -1 where ignored."""
        raw = read_label_image(self.label_paths[i])
        label = self.convert_label(raw)
        check_label(label, raw, self.n_class, self.label_paths[i],
                    self.label_values, self.fix)
        return label

    def convert_label(self, raw):
        """Map the raw (H, W) int32 values of a label file to class ids,
        without changing ``raw``."""
        raise NotImplementedError
