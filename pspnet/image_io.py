"""Reading images and writing label maps and pictures (OpenCV based).

Images are (3, H, W) RGB arrays, as everywhere in this package; label maps
are (H, W) integer arrays of class ids.
"""

import collections
import contextlib
import io
import os
import sys
import tempfile
import threading

import cv2
import numpy as np
from PIL import Image

from pspnet import atomic
from pspnet.errors import UserError

#: File name extensions the scripts treat as images when given a folder.
IMAGE_EXTENSIONS = ('.bmp', '.jpeg', '.jpg', '.jpe', '.png', '.ppm', '.pgm',
                    '.pbm', '.pnm', '.tif', '.tiff', '.webp', '.jp2')

_JPEG_MAGIC = b'\xff\xd8'

#: The EXIF orientation tag.
_ORIENTATION = 0x0112


def pending_orientation(image):
    """The EXIF orientation (1 to 8, 1 for none) that the pixels of a file
    still need once decoded, to look as image viewers show them.

    Every image file, photo or label map, is used as displayed: this is the
    one rule of every reader and size check of the package.

    Args:
        image (PIL.Image.Image): The file opened by Pillow (header only).

    Returns:
        int: The orientation to apply with :func:`apply_orientation`: the
        EXIF (or XMP) orientation of JPEG, PNG, WebP... files; 1 for TIFF,
        whose orientation tag the decoders of Pillow and OpenCV (libtiff)
        apply themselves (Pillow's size is the displayed one then), and 1
        for values other than 1 to 8.
    """
    if image.format == 'TIFF':
        return 1
    try:
        # Pillow's base getexif reads the metadata read so far, the PNG
        # chunks before the image data where eXIf belongs;
        # PngImageFile.getexif would decode the pixels to look further.
        value = Image.Image.getexif(image).get(_ORIENTATION, 1)
    except Exception:
        return 1
    return value if value in range(1, 9) else 1


def apply_orientation(array, orientation):
    """An (H, W, ...) array of stored pixels as displayed under an EXIF
    orientation (1: as stored, 2: mirrored, 3: turned 180 degrees, 4:
    flipped, 5: transposed, 6: turned 90 degrees clockwise, 7:
    transversed, 8: turned 90 degrees anticlockwise).

    Returns:
        numpy.ndarray: A contiguous array, (W, H, ...) for 5 to 8.
    """
    oriented = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: a[::-1].swapaxes(0, 1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: a[:, ::-1].swapaxes(0, 1),
    }[orientation](array)
    return np.ascontiguousarray(oriented)


#: What :func:`image_header` reads: ``size`` (width, height) as displayed,
#: Pillow's ``mode``, the ``orientation`` the pixels need
#: (:func:`pending_orientation`).
ImageHeader = collections.namedtuple('ImageHeader',
                                     ('size', 'mode', 'orientation'))


def image_header(path):
    """An image file's :data:`ImageHeader` read by Pillow without
    decoding the pixels, or None when Pillow cannot open the file (the
    readers report unreadable files, with their own message)."""
    try:
        with Image.open(path) as image:
            orientation = pending_orientation(image)
            width, height = image.size
            mode = image.mode
    except Exception:
        return None
    if orientation >= 5:
        width, height = height, width
    return ImageHeader((width, height), mode, orientation)


def _orientation_of(data):
    """:func:`pending_orientation` of an encoded file's bytes."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return pending_orientation(image)
    except Exception:
        return 1


_stderr_lock = threading.Lock()

#: What libjpeg prints for a damaged JPEG that it still decodes (into an
#: image with grey or smeared parts).
_JPEG_DAMAGE_MESSAGES = ('Corrupt JPEG data', 'Premature end of JPEG',
                         'Invalid JPEG', 'Bogus', 'Unsupported marker')


@contextlib.contextmanager
def stderr_captured():
    """Send file descriptor 2, where libjpeg and libpng print their own
    messages about broken files, to a temporary file; the list yielded
    receives that text. The caller reports the problem in one line."""
    captured = []
    with _stderr_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield captured  # no usable descriptor 2 (embedded interpreters)
            return
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield captured
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                captured.append(sink.read().decode('utf-8', 'replace'))


def _jpeg_damage(data, messages):
    """Why a JPEG that OpenCV decoded is damaged, or None: libjpeg's
    warnings, or a truncated file (which OpenCV decodes silently, the
    missing part grey), found by a full decode with Pillow."""
    for message in _JPEG_DAMAGE_MESSAGES:
        if message in messages:
            line = next(line for line in messages.splitlines()
                        if message in line)
            return line.strip()
    try:
        with Image.open(io.BytesIO(data)) as f:
            f.load()
    except (OSError, SyntaxError, ValueError) as e:
        return str(e)
    return None


def decode_image_file(path, flags=None, fix='pass a complete JPEG, PNG, BMP, '
                      'TIFF or WebP image'):
    """Read and decode an image file with OpenCV, refusing damaged files.

    Truncated and corrupt files are errors, not images with grey parts:
    OpenCV returns nothing for most of them, and for JPEGs, which libjpeg
    decodes anyway, its warnings and a complete decode tell.

    Args:
        path (str): Image file.
        flags (int or None): ``cv2.imdecode`` flags; None for what
            :func:`read_image` needs: JPEGs carry no alpha, other formats
            may carry alpha, which only ``IMREAD_UNCHANGED`` keeps.
        fix (str): What the user can do, for the error message.

    Returns:
        numpy.ndarray: The image as ``cv2.imdecode`` returns it, never
        empty, but as displayed: its EXIF orientation applied by
        :func:`apply_orientation` whatever the format and the flags
        (OpenCV applies it for some formats and flags only).

    Raises:
        UserError: Missing, a folder, unreadable, not an image, damaged.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except IsADirectoryError:
        raise UserError('cannot read image {}: it is a folder; pass an image '
                        'file'.format(path))
    except FileNotFoundError:
        raise UserError('image {} does not exist; check the path'.format(path))
    except OSError as e:
        raise UserError('cannot read image {}: {}; check its permissions'
                        .format(path, e.strerror or e))
    is_jpeg = data[:2].tobytes() == _JPEG_MAGIC
    if flags is None:
        flags = (cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR if is_jpeg
                 else cv2.IMREAD_UNCHANGED)
    if flags != cv2.IMREAD_UNCHANGED:  # which ignores it already
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    img = None
    messages = []
    if data.size:
        try:
            with stderr_captured() as messages:
                img = cv2.imdecode(data, flags)
        except cv2.error:
            img = None
    if img is None or img.size == 0:
        raise UserError('cannot read image {}: not an image file or corrupt; '
                        '{}'.format(path, fix))
    if is_jpeg:
        damage = _jpeg_damage(data.tobytes(), ''.join(messages))
        if damage:
            raise UserError('cannot read image {}: the JPEG is truncated or '
                            'corrupt ({}); {}'.format(path, damage, fix))
    return apply_orientation(img, _orientation_of(data.tobytes()))


def _to_unit_range(img):
    """Scale an OpenCV image of any depth to float32 in [0, 1]."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535
    if img.dtype == np.int8:
        return (img.astype(np.float32) + 128) / 255
    if img.dtype == np.int16:
        return (img.astype(np.float32) + 32768) / 65535
    # Float images: OpenCV's convention is [0, 1].
    return np.clip(np.nan_to_num(img.astype(np.float32)), 0, 1)


def read_image(path):
    """Read an image file as an RGB array.

    Any image OpenCV decodes is accepted. Grayscale images are repeated
    into three channels, palette images are expanded to their colours,
    16-bit images are scaled to [0, 255] (float images are taken to be in
    [0, 1], OpenCV's convention). An alpha channel is composited over a
    white background, so that transparent areas look as image viewers
    show them. The EXIF orientation is applied (any format): the image is
    as viewers display it (:func:`pending_orientation`).

    Args:
        path (str): Image file.

    Returns:
        numpy.ndarray: (3, H, W) float32 RGB image, values in [0, 255].

    Raises:
        UserError: The file does not exist, is a folder, or is not an image
        OpenCV can decode (corrupt, truncated, another format).
    """
    img = decode_image_file(path)
    img = _to_unit_range(img)
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels in (2, 4):
        color, alpha = img[:, :, :-1], img[:, :, -1:]
        img = color * alpha + (1 - alpha)
        channels -= 1
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    elif channels == 3:
        img = img[:, :, ::-1]  # OpenCV's BGR to RGB
    else:
        raise UserError('cannot read image {}: it has {} channels; pass a '
                        'grayscale, RGB or RGBA image'.format(path, channels))
    return np.ascontiguousarray(img.transpose(2, 0, 1) * 255,
                                dtype=np.float32)


def _write(path, array):
    """Encode ``array`` (OpenCV layout) as the format of ``path``'s
    extension and write it atomically, creating the folder."""
    folder = os.path.dirname(path)
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
        ok, data = cv2.imencode(os.path.splitext(path)[1] or '.png', array)
        if not ok:
            raise OSError('OpenCV could not encode it')
        atomic.write_atomic(path, lambda f: f.write(data.tobytes()))
    except (OSError, cv2.error) as e:
        raise UserError('cannot write {}: {}; {}'.format(
            path, getattr(e, 'strerror', None) or e,
            'free some space on its disk' if atomic.is_disk_full(e)
            else 'pass an --output in a writable folder'))


def write_image(path, img):
    """Write an RGB image (PNG for a ``.png`` path).

    Args:
        path (str): Output file; its folder is created if needed.
        img (numpy.ndarray): (3, H, W) RGB image, uint8, or float values in
            [0, 255] (rounded and clipped).

    Raises:
        UserError: The file cannot be written.
    """
    if img.dtype != np.uint8:
        img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    _write(path, np.ascontiguousarray(img.transpose(1, 2, 0)[:, :, ::-1]))


def write_label_png(path, label, n_class=None):
    """Write a label map as a single-channel PNG of class ids, losslessly.

    The PNG is 8-bit when the ids fit (``n_class <= 256``) and 16-bit
    otherwise, so that reading it back with ``cv2.imread(path,
    cv2.IMREAD_UNCHANGED)`` or PIL gives the ids. The ignore label -1 is
    written as the largest value of the type (255 or 65535), the usual
    "void" value, when no class uses it.

    Args:
        path (str): Output ``.png`` file; its folder is created if needed.
        label (numpy.ndarray): (H, W) integer class ids in
            [-1, ``n_class``).
        n_class (int): Number of classes; by default ``label.max() + 1``.

    Raises:
        ValueError: Ids out of range.
        UserError: The file cannot be written.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError('expected an (H, W) label map, got shape {}'
                         .format(label.shape))
    if n_class is None:
        n_class = int(label.max()) + 1 if label.size else 1
    if n_class > 65536:
        raise ValueError('a PNG holds at most 65536 class ids, not {}'
                         .format(n_class))
    dtype = np.uint8 if n_class <= 256 else np.uint16
    void = np.iinfo(dtype).max
    has_ignore = label.size and label.min() == -1
    if label.size and (label.min() < -1 or label.max() >= n_class):
        raise ValueError('label ids must lie in [-1, {}), found [{}, {}]'
                         .format(n_class, label.min(), label.max()))
    if has_ignore and n_class > void:
        raise ValueError('cannot write the ignore label -1 with {} classes: '
                         '{} is a class id'.format(n_class, void))
    out = label.astype(dtype)  # -1 wraps around to the largest value
    _write(path, out)


def list_images(paths):
    """Expand image paths and folders into a list of image files.

    Args:
        paths (sequence of str): Image files and folders. A folder stands
            for its images (files with an extension in
            :data:`IMAGE_EXTENSIONS`, any case, not recursing), sorted by
            name.

    Returns:
        list of str: Image paths, in the order given, without repeats.

    Raises:
        UserError: A path does not exist, or a folder holds no images.
    """
    images = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(
                os.path.join(path, name) for name in os.listdir(path)
                if name.lower().endswith(IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(path, name)))
            if not found:
                raise UserError('folder {} holds no images ({}); pass a '
                                'folder of images or image files'.format(
                                    path, ', '.join(IMAGE_EXTENSIONS)))
            images.extend(found)
        elif os.path.exists(path):
            images.append(path)
        else:
            raise UserError('image {} does not exist; check the path'
                            .format(path))
    unique = []
    seen = set()
    for path in images:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique
