"""What every reader of an annotation export returns, and the checks they
share: file names, image files and their sizes, points inside images.

An :class:`Export` holds the classes and, per split, :class:`Item` s:
one image (a file, or bytes embedded in the export) and how to draw its
label map. Everything a reader can check without drawing is checked when
the export is read; drawing happens when the dataset is written.
"""

import dataclasses
import io
import json
import os
import posixpath

import numpy as np
from PIL import Image

from pspnet import image_io
from pspnet.datasets.description import DEFAULT_IMAGE_EXTENSIONS
from pspnet.datasets.description import SPLITS
from pspnet.errors import UserError
from pspnet.palette import generate_label_colors

#: How far (in pixels) a vertex may lie outside its image: tools store
#: points on the border with rounding, and drawing clips them; a point
#: further out means the shape was drawn on another image or size.
OUTSIDE_TOLERANCE = 1.0

#: The extension an embedded image is written with, by Pillow's format.
_FORMAT_EXTENSIONS = {'JPEG': '.jpg', 'PNG': '.png', 'BMP': '.bmp',
                      'TIFF': '.tif', 'WEBP': '.webp'}


@dataclasses.dataclass
class Item(object):
    """One image of an export and its label map to draw.

    Attributes:
        name (str): Where it goes in the dataset: its path relative to the
            split's folder, ``/``-separated, without extension.
        ext (str): The image file's extension (``'.jpg'``).
        size (tuple of ints): (width, height) of the image as displayed.
        source (str): The export file that describes it (for messages).
        image_path (str or None): The image file to copy, or None when
            the image is embedded in the export.
        image_bytes (callable or None): ``image_bytes()`` reads the
            bytes of an image file embedded in the export (read again when
            written, so that the images are not all held in memory).
        render (callable or None): ``render()`` draws the label map: an
            (H, W) int32 array of class ids in [0, n_class), -1 for
            ignored pixels (H, W the image's displayed size); None for an
            image without labels (a test split).
    """

    name: str
    ext: str
    size: tuple
    source: str
    image_path: str = None
    image_bytes: object = None
    render: object = None


@dataclasses.dataclass
class Export(object):
    """A checked annotation export.

    Attributes:
        kind (str): ``'COCO'``, ``'labelme'`` or ``'CVAT'``.
        classes (tuple of str): Class names; class 0 is the background
            (pixels no shape covers) for COCO and labelme.
        colors (tuple): One (R, G, B) per class.
        splits (dict): Split name (``'train'``, ``'val'``, ``'test'``) to
            its list of :class:`Item`, sorted by name.
        notes (list of str): What was left out or treated specially
            (skipped shapes, ignored crowd regions), one line each.
    """

    kind: str
    classes: tuple
    colors: tuple
    splits: dict
    notes: list = dataclasses.field(default_factory=list)


def read_json(path, what, fix):
    """The JSON document of an export's file.

    Args:
        path (str): The file.
        what (str): What it is, for messages (``'COCO file'``).
        fix (str): What to do about a file that is no JSON.

    Raises:
        UserError: The file cannot be read or is no JSON.
    """
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError('{} {} is not valid JSON ({}); {}'.format(
            what, path, e, fix))
    except OSError as e:
        raise UserError('cannot read {} {} ({})'.format(what, path, e))


def relative_name(text, where, what='file name'):
    """A file name of an export as a normalized relative ``/``-separated
    path (Windows' backslashes read as separators).

    Raises:
        UserError: Not a non-empty string, absolute, or leading outside
        its folder (``..``).
    """
    if not isinstance(text, str) or not text.strip():
        raise UserError('{}: the {} {!r} is not a file name; correct the '
                        'export'.format(where, what, text))
    name = text.replace('\\', '/')
    normal = posixpath.normpath(name)
    if (name.startswith('/') or (len(name) > 1 and name[1] == ':')
            or normal == '..' or normal.startswith('../')):
        raise UserError('{}: the {} {!r} is not a path inside the images\' '
                        'folder; give names relative to it'.format(
                            where, what, text))
    return normal


def check_extension(ext, path, where):
    """Refuse an image whose extension a dataset description does not
    read (:data:`~pspnet.datasets.description.DEFAULT_IMAGE_EXTENSIONS`)."""
    if ext.lower() not in DEFAULT_IMAGE_EXTENSIONS:
        raise UserError('{}: image {} is not one of {}; convert it to JPEG '
                        'or PNG'.format(where, path, ' '.join(
                            DEFAULT_IMAGE_EXTENSIONS)))


def image_file(path, where, fix):
    """The :data:`pspnet.image_io.ImageHeader` of an existing, readable
    image file.

    Raises:
        UserError: Missing (``fix`` says what to do), or not an image.
    """
    if not os.path.isfile(path):
        raise UserError('{}: image {} does not exist; {}'.format(
            where, path, fix))
    check_extension(os.path.splitext(path)[1], path, where)
    header = image_io.image_header(path)
    if header is None:
        raise UserError('{}: cannot read image {} (not an image, or '
                        'corrupt); restore the file'.format(where, path))
    return header


def embedded_image(data, where):
    """The extension and the (width, height) as displayed of an image
    file's bytes (an image embedded in an export), decoded completely.

    Raises:
        UserError: The bytes are no complete image of a format the
        datasets read.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
            orientation = image_io.pending_orientation(image)
            width, height = image.size
            image.load()
    except Exception as e:
        raise UserError('{}: the embedded image cannot be read ({}); save '
                        'the file again with its image'.format(where, e))
    if kind not in _FORMAT_EXTENSIONS:
        raise UserError('{}: the embedded image is a {} file; convert it to '
                        'JPEG or PNG'.format(where, kind))
    if orientation >= 5:
        width, height = height, width
    return _FORMAT_EXTENSIONS[kind], (width, height)


def check_size(where, declared, header, path):
    """Refuse an image whose size as displayed is not the one the export
    gives (its shapes were drawn on another picture), in words that say
    when the export gives the stored size of a turned photo.

    Args:
        where (str): The export file, for the message.
        declared (tuple of ints): (width, height) the export gives.
        header (pspnet.image_io.ImageHeader): The image file's header.
        path (str): The image file.
    """
    declared = tuple(int(v) for v in declared)
    if declared == tuple(header.size):
        return
    if header.orientation >= 5 and declared == tuple(header.size[::-1]):
        raise UserError(
            '{}: the export gives image {} as {}x{}, its stored size, but '
            'the image is {}x{} as displayed (its EXIF orientation {} turns '
            'it), and images are used as displayed; remove the orientation '
            'tag from the image file if the shapes were drawn on the stored '
            'picture, or annotate the displayed image'.format(
                where, path, declared[0], declared[1], header.size[0],
                header.size[1], header.orientation))
    raise UserError('{}: the export gives image {} as {}x{} but the file is '
                    '{}x{}; export again from the same images'.format(
                        where, path, declared[0], declared[1],
                        header.size[0], header.size[1]))


def check_points(xy, size, where):
    """Refuse points that are not finite or lie outside the image (beyond
    :data:`OUTSIDE_TOLERANCE`).

    Args:
        xy (numpy.ndarray): (N, 2) float64 (x, y) points, in pixels.
        size (tuple of ints): (width, height) of the image.
        where (str): The shape, for the message.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(xy).all():
        raise UserError('{}: a point is not a finite number; correct the '
                        'export'.format(where))
    outside = ((xy < -OUTSIDE_TOLERANCE)
               | (xy > np.asarray(size, dtype=np.float64)
                  + OUTSIDE_TOLERANCE)).any(axis=1)
    if outside.any():
        x, y = xy[np.argmax(outside)]
        raise UserError('{}: point ({:g}, {:g}) lies outside the {}x{} '
                        'image; the shape was drawn on another image or '
                        'size: correct or remove it'.format(
                            where, x, y, size[0], size[1]))


def number_list(value):
    """Whether ``value`` is a list of finite numbers (no booleans)."""
    return isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool)
        and np.isfinite(v) for v in value)


def check_items(export):
    """Refuse two items of one name in a split (their label maps would
    be one file) and an image file in two items (two label maps of one
    image, or one image in two splits)."""
    seen = {}
    for split in SPLITS:
        names = {}
        for item in export.splits.get(split, ()):
            key = item.name
            if key in names:
                raise UserError(
                    '{} and {} give two images of the name {} in split {} '
                    '(their label maps would be one file); rename one'
                    .format(names[key], item.source, item.name, split))
            names[key] = item.source
            if item.image_path is None:
                continue
            path = os.path.realpath(item.image_path)
            if path in seen:
                other_split, other = seen[path]
                raise UserError(
                    'image {} is annotated twice: by {} ({}) and by {} ({}); '
                    'keep one annotation per image, in one split'.format(
                        item.image_path, other, other_split, item.source,
                        split))
            seen[path] = (split, item.source)


def with_generated_colors(kind, classes, splits, notes, used, what):
    """The checked :class:`Export` of a format without colours of its own
    (COCO, labelme): generated colours, and a note naming the classes
    (but the background) that no ``what`` covers.

    Args:
        used (set of int): The class ids some annotation draws.
        what (str): What draws a class, for the note (``'annotations'``).
    """
    unused = [name for i, name in enumerate(classes) if i and i not in used]
    if unused:
        notes = notes + ['classes without {} (no pixels): {}'.format(
            what, ', '.join(unused))]
    result = Export(
        kind=kind, classes=tuple(classes),
        colors=tuple(tuple(int(c) for c in rgb)
                     for rgb in generate_label_colors(len(classes))),
        splits=splits, notes=notes)
    check_items(result)
    return result

