"""What the three datasets share: reading images and label maps, and the
(image, label) dataset over lists of file paths."""

import io
import os

import chainer
import cv2
import numpy as np
from PIL import Image

from pspnet import image_io
from pspnet.errors import UserError
from pspnet.image_io import decode_image_file


def read_rgb_image(path):
    """Read an image file as a CHW RGB array, as ChainerCV reads dataset
    images (OpenCV's ``IMREAD_COLOR``: grey repeated, alpha dropped), as
    displayed: its EXIF orientation applied, whatever the format
    (:func:`pspnet.image_io.pending_orientation`).

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


#: PIL modes of label files: 1-bit, 2-, 4- and 8-bit grey, palette
#: (indices), 16-bit and 32-bit integers.
LABEL_MODES = ('1', 'L', 'P', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N')

# Pillow expands 2- and 4-bit grey samples to 8 bits (0, 85, 170, 255 and
# 0, 17, ..., 255); the stored values are these divided by the step. The
# raw modes say so (L;2, L;2I, L;2R..., the same for 4 bits).
_EXPANDED_GREY = (('L;2', 85), ('L;4', 17))

_COLOUR_MODES = ('RGB', 'RGBA', 'RGBX', 'RGBa', 'CMYK', 'YCbCr', 'LAB',
                 'HSV')


#: What to do about a colour label file of a dataset that reads stored
#: values (the description's ``"label_format": "rgb"`` is the other way).
COLOUR_LABEL_FIX = ('save the class ids as a single-channel (greyscale) '
                    'PNG, or as a palette PNG whose indices are the class '
                    'ids')


def label_mode_problem(path, mode, colour_fix=COLOUR_LABEL_FIX):
    """Why a label file of PIL ``mode`` cannot be read as class ids (one
    line, naming the file and what to do), or None when it can: 1-bit,
    grey (2 to 16 bits, 32-bit integers) and palette images.
    ``colour_fix`` says what to do about a colour file."""
    if mode in LABEL_MODES:
        return None
    if mode in _COLOUR_MODES:
        what = ('a colour picture, whose colours are not read as classes; '
                + colour_fix)
    elif mode in ('LA', 'La', 'PA'):
        what = ('with an alpha (transparency) channel; save it without '
                'alpha, as a single-channel (greyscale) or palette PNG of '
                'class ids')
    elif mode == 'F':
        what = ('of floating-point values; save the class ids as an 8- or '
                '16-bit single-channel PNG')
    else:
        what = ('not a map of class ids; save the class ids as a '
                'single-channel (greyscale) or palette PNG')
    return 'label image {} is a {} image, {}'.format(path, mode, what)


def image_header(path):
    """An image file's :data:`pspnet.image_io.ImageHeader` (the size as
    displayed, the mode, the orientation), without decoding its pixels,
    or None when Pillow cannot open it (unreadable files are reported,
    with their own message, when they are read)."""
    return image_io.image_header(path)


def check_label_size(label_path, label_size, img_path, img_size, fix):
    """Refuse a label map whose size is not its image's as displayed.

    Label maps follow the image as displayed (its EXIF orientation
    applied, as image viewers and labelme show it); a label of the stored
    size of a turned image is refused in words that say so.

    Args:
        label_path, img_path (str): The two files, for the message.
        label_size, img_size (tuple of ints): (width, height) of each, as
            displayed.
        fix (str): What to do about it, for the message.

    Raises:
        UserError: The sizes differ.
    """
    if tuple(label_size) == tuple(img_size):
        return
    header = image_header(img_path)
    if (header is not None and header.orientation >= 5
            and tuple(label_size) == tuple(img_size[::-1])):
        raise UserError(
            'label image {} is {}x{} but its image {} is {}x{} as displayed '
            '(its EXIF orientation {} turns the stored {}x{} picture): label '
            'maps must follow the displayed orientation, as image viewers '
            'and labelme show the image; turn the label map, or draw it on '
            'the image as displayed ({})'.format(
                label_path, label_size[0], label_size[1], img_path,
                img_size[0], img_size[1], header.orientation, img_size[1],
                img_size[0], fix))
    raise UserError(
        'label image {} is {}x{} but its image {} is {}x{}; each label '
        'map must have its image\'s size ({})'.format(
            label_path, label_size[0], label_size[1], img_path,
            img_size[0], img_size[1], fix))


def read_label_image(path, colour_fix=COLOUR_LABEL_FIX):
    """Read a label map: its stored values, as displayed.

    Palette images give their palette indices, not their colours; 1-bit
    images 0 and 1; 2- and 4-bit grey images their stored values (0 to 3,
    0 to 15), not Pillow's expansion to 8 bits. Colour images and images
    with alpha are refused. An EXIF orientation is applied, as for images
    (:func:`pspnet.image_io.pending_orientation`).

    Args:
        path (str): Label image file.
        colour_fix (str): What to do about a colour file, for the message.

    Returns:
        numpy.ndarray: (H, W) int32 raw values (0 to 255 for 8-bit files).

    Raises:
        UserError: The file is missing, corrupt, or a colour image.
    """
    problem = None
    try:
        # From bytes: Pillow memory-maps uncompressed TIFFs given by name,
        # and scrambles single-channel ones when it turns them (EXIF
        # orientations 5 to 8) in place.
        with open(path, 'rb') as data, Image.open(io.BytesIO(
                data.read())) as f:
            problem = label_mode_problem(path, f.mode, colour_fix)
            if problem is None:
                orientation = image_io.pending_orientation(f)
                step = _grey_step(f)
                raw = np.asarray(f).astype(np.int32)
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError('cannot read label image {}: missing or corrupt '
                        '({}); restore the file from the dataset archive'
                        .format(path, e))
    if problem is not None:
        raise UserError(problem)
    if step > 1:
        raw //= step
    return image_io.apply_orientation(raw, orientation)


#: PIL modes of colour-coded label files: colour (RGB; RGBA when every
#: pixel is opaque), palette (their colours) and grey (grey colours).
RGB_LABEL_MODES = ('RGB', 'RGBA', 'RGBX', 'P', 'PA', 'L', 'LA', '1')


def rgb_label_mode_problem(path, mode):
    """Why a label file of PIL ``mode`` cannot be read as colours (one
    line), or None when it can (:data:`RGB_LABEL_MODES`)."""
    if mode in RGB_LABEL_MODES:
        return None
    return ('label image {} is a {} image, not a colour-coded label map; '
            'save it as an 8-bit RGB PNG painted in the "colors" of the '
            'dataset file'.format(path, mode))


def pack_colors(colors):
    """(..., 3) RGB values in [0, 255] -> (...) int32 ``0xRRGGBB``."""
    rgb = np.asarray(colors, dtype=np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def unpack_color(packed):
    """``0xRRGGBB`` -> [R, G, B] (a list of ints)."""
    packed = int(packed)
    return [(packed >> 16) & 255, (packed >> 8) & 255, packed & 255]


def read_rgb_label(path):
    """Read a colour-coded label map: its colours, as displayed.

    RGB files give their colours, palette files the colours of their
    indices, grey files grey colours (v, v, v); pixels that are not fully
    opaque (an alpha channel, a transparent palette entry) are refused, as
    their colour names no class. An EXIF orientation is applied.

    Args:
        path (str): Label image file (8-bit channels).

    Returns:
        numpy.ndarray: (H, W) int32 colours packed as ``0xRRGGBB``
        (:func:`pack_colors`).

    Raises:
        UserError: The file is missing, corrupt, of another mode, 16-bit,
        or has transparent pixels.
    """
    problem = None
    try:
        with open(path, 'rb') as data, Image.open(io.BytesIO(
                data.read())) as f:
            problem = rgb_label_mode_problem(path, f.mode)
            if problem is None and any(';16' in r for r in _rawmodes(f)):
                # Pillow keeps the high byte of 16-bit colours.
                problem = ('label image {} has 16-bit colour channels; save '
                           'it as an 8-bit RGB PNG painted in the "colors" '
                           'of the dataset file'.format(path))
            if problem is None:
                orientation = image_io.pending_orientation(f)
                rgba = np.asarray(f.convert('RGBA'))
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError('cannot read label image {}: missing or corrupt '
                        '({}); restore the file'.format(path, e))
    if problem is not None:
        raise UserError(problem)
    transparent = int(np.count_nonzero(rgba[:, :, 3] != 255))
    if transparent:
        raise UserError(
            'label image {} has {} pixels that are not opaque, whose colour '
            'is no class; save it without transparency (alpha)'.format(
                path, transparent))
    packed = pack_colors(rgba[:, :, :3])
    return image_io.apply_orientation(packed, orientation)


class ColorTable(object):
    """The classes of colours: each class's colour and the ignored ones.

    Args:
        colors (sequence): n_class distinct [R, G, B] colours, class i's
            at i.
        ignore_colors (sequence): [R, G, B] colours of ignored pixels.
    """

    def __init__(self, colors, ignore_colors=()):
        self.n_class = len(colors)
        keys = np.concatenate([
            pack_colors(np.asarray(colors).reshape(-1, 3)),
            pack_colors(np.asarray(ignore_colors, dtype=np.int32)
                        .reshape(-1, 3))]).astype(np.int32)
        values = np.concatenate([
            np.arange(self.n_class), np.full(len(keys) - self.n_class, -1)])
        order = np.argsort(keys, kind='stable')
        self._keys = keys[order]
        self._values = values[order].astype(np.int32)
        if len(np.unique(self._keys)) != len(self._keys):
            raise ValueError('the colours must be distinct')

    def convert(self, packed):
        """(H, W) packed colours -> (H, W) int32 class ids, -1 for the
        ignored colours, ``n_class`` for colours of no class."""
        packed = np.asarray(packed)
        index = np.searchsorted(self._keys, packed)
        index = np.minimum(index, len(self._keys) - 1)
        found = self._keys[index] == packed
        return np.where(found, self._values[index],
                        self.n_class).astype(np.int32)


def check_rgb_label(label, packed, n_class, path, allowed, fix):
    """Refuse a colour-coded label map with colours that are neither a
    class's nor ignored, naming the file, the colours and their pixel
    counts (most pixels first).

    Args:
        label (numpy.ndarray): (H, W) int32 converted ids
            (:meth:`ColorTable.convert`).
        packed (numpy.ndarray): (H, W) the colours of the file, packed.
        n_class (int): Number of classes.
        path (str): The label file.
        allowed (str): The colours the file may hold, for the message.
        fix (str): What to do.

    Raises:
        UserError: Some pixel's colour is no class's.
    """
    bad = label >= n_class
    if not bad.any():
        return
    colours, counts = np.unique(packed[bad], return_counts=True)
    order = np.argsort(-counts, kind='stable')
    named = ', '.join('{} ({} pixels)'.format(unpack_color(colours[i]),
                                               int(counts[i]))
                      for i in order[:5])
    raise UserError(
        'label image {} holds the colour{} {}{}, which {} no class colour '
        'nor ignored in this dataset (it may hold {}); {}'.format(
            path, '' if len(colours) == 1 else 's', named,
            ', ...' if len(colours) > 5 else '',
            'is' if len(colours) == 1 else 'are', allowed, fix))


def _rawmodes(image):
    """The raw modes of the tiles of an image opened by Pillow (how its
    samples are stored: ``'L;2'``, ``'RGB;16B'``, ...)."""
    modes = []
    for tile in image.tile:
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str):
            modes.append(rawmode)
    return modes


def _grey_step(image):
    """The factor by which Pillow expanded the grey samples of ``image``
    (85 for 2 bits, 17 for 4 bits), 1 for other images."""
    if image.mode != 'L':
        return 1
    for rawmode in _rawmodes(image):
        for prefix, step in _EXPANDED_GREY:
            if rawmode.startswith(prefix):
                return step
    return 1


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
