"""labelme's JSON files as semantic label maps, drawn as labelme draws
them (``labelme.utils.shapes_to_label``).

Each JSON file describes one image (``imagePath``, relative to the JSON
file's folder, or the image itself in ``imageData``, base64, which
labelme reads first) and its ``shapes``. Polygons, rectangles (two
corners), oriented rectangles (four) and circles (the centre and a point
on the circle) are drawn with Pillow's ``ImageDraw`` as labelme draws
them (filled, outline included), masks (``shape_type`` ``"mask"``: a
base64 PNG over the box of its two points) as labelme places them;
shapes are drawn in the order of the file, a later one over an earlier
one (labelme has no holes).
Lines, line strips and points cover no area: they are skipped and
counted.

Classes: class 0 is the background (pixels no shape covers; shapes
labelled ``_background_`` or ``background`` draw it), then the labels
found in the files, sorted, or the names of a classes file (labelme's
``labels.txt``: one name a line, the first the background; a line
``__ignore__`` is no class). Shapes labelled ``__ignore__`` are drawn as
ignored pixels.
"""

import base64
import binascii
import io
import math
import os

import numpy as np
from PIL import Image
from PIL import ImageDraw

from pspnet.annotations import export
from pspnet.errors import UserError

#: Labels of shapes drawn as ignored pixels, and as the background.
IGNORE = '__ignore__'
BACKGROUNDS = ('_background_', 'background')
#: The name of class 0 when no classes file names it.
BACKGROUND = 'background'
#: Shape types drawn, and those skipped (no area).
DRAWN = ('polygon', 'rectangle', 'circle', 'oriented_rectangle', 'mask')
SKIPPED = ('line', 'linestrip', 'point', 'points')


def _load(path):
    data = export.read_json(path, 'labelme file',
                            'save it again with labelme')
    if not isinstance(data, dict) or not isinstance(data.get('shapes'),
                                                     list):
        raise UserError('{} is not a labelme file (no "shapes" list); keep '
                        'only labelme\'s JSON files in the folder'.format(
                            path))
    return data


def read_classes_file(path):
    """The class names of a labelme ``labels.txt``: one name a line, the
    first the background; ``__ignore__`` lines and blank lines left out.

    Raises:
        UserError: Missing, unreadable, no class, or a name twice.
    """
    try:
        with open(path, encoding='utf-8') as f:
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError('cannot read classes file {} ({}); pass a UTF-8 text '
                        'file of one class name a line'.format(path, e))
    names = [line for line in lines if line and line != IGNORE]
    if not names:
        raise UserError('classes file {} names no class; write one class '
                        'name a line, the background first'.format(path))
    for i, name in enumerate(names):
        if name in names[:i]:
            raise UserError('classes file {} names {!r} twice; keep one'
                            .format(path, name))
    return names


def _decode(text, where, what):
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as e:
        raise UserError('{}: the {} is not base64 ({}); save the file again '
                        'with labelme'.format(where, what, e))


def _mask(shape, where):
    """The (h, w) bool array of a mask shape."""
    data = _decode(shape.get('mask'), where, 'mask')
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image).astype(bool)
    except Exception as e:
        raise UserError('{}: the mask cannot be read ({}); draw the shape '
                        'again'.format(where, e))


def _shape(shape, size, where):
    """(kind, points, mask) of a shape to draw, or (kind, None, None) for
    a shape to skip."""
    if not isinstance(shape, dict):
        raise UserError('{} is not an object; save the file again with '
                        'labelme'.format(where))
    kind = shape.get('shape_type') or 'polygon'
    if kind in SKIPPED:
        return kind, None, None
    if kind not in DRAWN:
        raise UserError('{}: unknown shape_type {!r} (labelme draws {}); '
                        'remove the shape'.format(where, kind,
                                                  ', '.join(DRAWN + SKIPPED)))
    points = shape.get('points')
    if (not isinstance(points, list)
            or not all(export.number_list(p) and len(p) == 2
                       for p in points)):
        raise UserError('{}: "points" must be a list of [x, y] numbers; '
                        'save the file again with labelme'.format(where))
    need = {'polygon': 3, 'rectangle': 2, 'circle': 2,
            'oriented_rectangle': 4, 'mask': 2}[kind]
    if (len(points) < need if kind == 'polygon' else len(points) != need):
        raise UserError('{}: a {} needs {}{} points, not {}; draw it again '
                        'or remove it'.format(where, kind, 'at least '
                                              if kind == 'polygon' else '',
                                              need, len(points)))
    xy = np.asarray(points, dtype=np.float64)
    # A circle may reach beyond the image (drawing clips it); its centre
    # and its point may not.
    export.check_points(xy, size, where)
    mask = None
    if kind == 'mask':
        mask = _mask(shape, where)
        (x1, y1), (x2, y2) = xy.astype(int)
        if mask.shape != (y2 - y1 + 1, x2 - x1 + 1) or min(x1, y1) < 0 \
                or x2 >= size[0] or y2 >= size[1]:
            raise UserError('{}: the {}x{} mask does not fill its box from '
                            '({}, {}) to ({}, {}) inside the {}x{} image; '
                            'draw it again'.format(
                                where, mask.shape[1], mask.shape[0], x1, y1,
                                x2, y2, size[0], size[1]))
    return kind, xy, mask


def shape_mask(size, kind, xy, mask=None):
    """The pixels a shape covers, as labelme's ``shape_to_mask`` draws
    them (``mask`` shapes as ``shapes_to_label`` places them).

    Args:
        size (tuple of ints): (width, height) of the image.
        kind (str): ``'polygon'``, ``'rectangle'``, ``'circle'``,
            ``'oriented_rectangle'`` (four corners) or ``'mask'``.
        xy (numpy.ndarray): (N, 2) float64 points.
        mask (numpy.ndarray or None): (h, w) bool mask of a mask shape.

    Returns:
        numpy.ndarray: (H, W) bool.
    """
    width, height = size
    if kind == 'mask':
        out = np.zeros((height, width), dtype=bool)
        (x1, y1), (x2, y2) = xy.astype(int)
        out[y1:y2 + 1, x1:x2 + 1] = mask
        return out
    canvas = Image.new('L', (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    points = [tuple(p) for p in xy.tolist()]
    if kind == 'circle':
        (cx, cy), (px, py) = points
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
    elif kind == 'rectangle':
        # Either two opposite corners, in any order (Pillow wants the
        # top left first).
        (x0, y0), (x1, y1) = points
        draw.rectangle([(min(x0, x1), min(y0, y1)),
                        (max(x0, x1), max(y0, y1))], outline=1, fill=1)
    else:  # polygons, oriented rectangles
        draw.polygon(points, outline=1, fill=1)
    return np.asarray(canvas).astype(bool)


def _renderer(size, shapes):
    def render():
        label = np.zeros((size[1], size[0]), dtype=np.int32)
        for kind, xy, mask, value in shapes:
            label[shape_mask(size, kind, xy, mask)] = value
        return label
    return render


class _File(object):
    """One checked labelme file: its image and its shapes."""

    def __init__(self, path, name):
        self.path = path
        self.name = name
        data = _load(path)
        self.image_path = self.image_bytes = None
        if data.get('imageData'):
            self.ext, self.size = export.embedded_image(
                _decode(data['imageData'], path, 'imageData'), path)
            self.image_bytes = lambda: _decode(_load(path)['imageData'], path,
                                               'imageData')
        else:
            rel = data.get('imagePath')
            if not isinstance(rel, str) or not rel.strip():
                raise UserError('{}: neither imageData nor imagePath; save '
                                'the file again with labelme'.format(path))
            # Relative to the JSON file's folder; Windows' separators too.
            rel = rel.replace('\\', '/')
            image_path = os.path.normpath(os.path.join(
                os.path.dirname(path), rel))
            header = export.image_file(
                image_path, path, 'keep the image where imagePath says, '
                'or save the file with its image data')
            self.image_path, self.size = image_path, header.size
            self.ext = os.path.splitext(image_path)[1]
        declared = (data.get('imageWidth'), data.get('imageHeight'))
        if all(isinstance(v, int) for v in declared):
            if self.image_path is not None:
                export.check_size(path, declared, header,
                                  self.image_path)
            elif tuple(declared) != tuple(self.size):
                raise UserError('{}: imageWidth and imageHeight say {}x{} '
                                'but the embedded image is {}x{}; save the '
                                'file again with labelme'.format(
                                    path, declared[0], declared[1],
                                    self.size[0], self.size[1]))
        self.shapes = []
        self.skipped = {}
        for i, shape in enumerate(data['shapes']):
            where = '{} shape {}'.format(path, i)
            kind, xy, mask = _shape(shape, self.size, where)
            if xy is None:
                self.skipped[kind] = self.skipped.get(kind, 0) + 1
                continue
            label = shape.get('label')
            if not isinstance(label, str) or not label.strip():
                raise UserError('{}: the shape has no label; label it or '
                                'remove it'.format(where))
            self.shapes.append((kind, xy, mask, label, where))


def _json_files(folder):
    """(path, name) of the JSON files under ``folder``, sorted, ``name``
    the path relative to the folder, ``/``-separated, without
    extension."""
    if not os.path.isdir(folder):
        raise UserError('labelme folder {} does not exist; pass the folder '
                        'of the JSON files'.format(folder))
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith('.json'):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, folder)[:-len('.json')]
                found.append((path, rel.replace(os.sep, '/')))
    if not found:
        raise UserError('no labelme .json files in {}; pass the folder '
                        'labelme saved them in'.format(folder))
    return found


def read_labelme(folders, classes=None):
    """Read and check folders of labelme files, one per split.

    Args:
        folders (dict): Split to its folder (searched with subfolders).
        classes (list of str or None): The class names, class 0 the
            background (:func:`read_classes_file`); by default the labels
            found, sorted, after ``background``.

    Returns:
        pspnet.annotations.export.Export: The classes and the items.

    Raises:
        UserError: The first problem, in one line: a file that is no
        labelme file, a missing image or one of another size, a shape
        outside its image or of too few points, a label not in
        ``classes``, an image annotated twice.
    """
    files = {split: [_File(path, name) for path, name in _json_files(folder)]
             for split, folder in folders.items()}
    if classes is None:
        found = sorted({shape[3] for split in files.values()
                        for f in split for shape in f.shapes}
                       - set(BACKGROUNDS) - {IGNORE})
        classes = [BACKGROUND] + found
    value_of = {name: i for i, name in enumerate(classes)}
    value_of.update({name: 0 for name in BACKGROUNDS})
    value_of[IGNORE] = -1
    splits = {}
    skipped = {}
    for split, split_files in files.items():
        items = []
        for f in split_files:
            shapes = []
            for kind, xy, mask, label, where in f.shapes:
                if label not in value_of:
                    raise UserError('{}: label {!r} is not in the classes '
                                    'file; add it there, or correct the '
                                    'label'.format(where, label))
                shapes.append((kind, xy, mask, value_of[label]))
            for kind, count in f.skipped.items():
                skipped[kind] = skipped.get(kind, 0) + count
            items.append(export.Item(
                name=f.name, ext=f.ext, size=f.size, source=f.path,
                image_path=f.image_path, image_bytes=f.image_bytes,
                render=_renderer(f.size, shapes)))
        splits[split] = items
    notes = ['{} {} shape(s) skipped (no area)'.format(count, kind)
             for kind, count in sorted(skipped.items())]
    used = {value_of[shape[3]] for split in files.values() for f in split
            for shape in f.shapes}
    return export.with_generated_colors('labelme', classes, splits, notes,
                                        used, 'shapes')
