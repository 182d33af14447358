"""COCO instance annotations (what CVAT, Label Studio, Roboflow and most
annotation tools export) as semantic label maps.

Each export file (one per split) lists ``images`` (``id``, ``file_name``,
``width``, ``height``), ``categories`` (``id``, ``name``) and
``annotations`` (``image_id``, ``category_id``, ``segmentation``,
``iscrowd``). A segmentation is a list of polygons ``[x1, y1, x2, y2,
...]`` (their union: several parts, no holes), an uncompressed RLE
``{"counts": [...], "size": [h, w]}`` or a compressed one (``counts`` a
string); RLE masks may have holes. Masks are made by pycocotools exactly as
``COCO.annToMask`` makes them.

The classes are ``background`` (class 0: pixels no annotation covers)
and the categories in the order of their ids; a category named
``background`` is class 0. Overlapping annotations are drawn largest
first (by their pixel area), so that smaller ones stay visible on top;
crowd regions (``iscrowd``: 1) are drawn as ignored pixels, or as their
category with ``crowd='class'``. An export file without ``annotations``
is a split without labels (test only).
"""

import os

import numpy as np
from pycocotools import mask as mask_utils

from pspnet.annotations import export
from pspnet.errors import UserError

#: The name of class 0, the pixels no annotation covers.
BACKGROUND = 'background'
#: What crowd regions become: ignored pixels, or their category.
CROWD_CHOICES = ('ignore', 'class')


def _load(path):
    if not os.path.isfile(path):
        raise UserError('COCO file {} does not exist; check the path'.format(
            path))
    data = export.read_json(path, 'COCO file', 'export it again')
    if not isinstance(data, dict) or not isinstance(data.get('images'), list):
        raise UserError('{} is not a COCO annotation file (no "images" '
                        'list); pass the export\'s instances JSON'.format(
                            path))
    return data


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _categories(path, data):
    """((id, name), ...) sorted by id."""
    cats = data.get('categories')
    if not isinstance(cats, list) or not cats:
        raise UserError('{} has no "categories"; export it with its '
                        'categories'.format(path))
    pairs = []
    for cat in cats:
        if (not isinstance(cat, dict) or not _is_int(cat.get('id'))
                or not isinstance(cat.get('name'), str)
                or not cat['name'].strip()):
            raise UserError('{}: category {!r} has no integer "id" and '
                            'name; correct the export'.format(path, cat))
        pairs.append((cat['id'], cat['name']))
    pairs.sort()
    for (id0, name0), (id1, name1) in zip(pairs, pairs[1:]):
        if id0 == id1:
            raise UserError('{}: category id {} is given twice ({!r} and '
                            '{!r}); correct the export'.format(
                                path, id0, name0, name1))
    names = [name for _, name in pairs]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise UserError('{}: two categories are named {!r}; rename one '
                            'so that each class has its own name'.format(
                                path, name))
    return tuple(pairs)


def _compressed_total(counts):
    """The pixels an RLE string of pycocotools covers (the sum of its
    runs), or None when a run is negative; read as pycocotools'
    ``rleFrString`` reads it, to refuse a string of another size before
    pycocotools decodes it (which does not check)."""
    runs = []
    p = 0
    while p < len(counts):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(counts):
                return None
            c = ord(counts[p]) - 48
            x |= (c & 0x1f) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            return None
        runs.append(x)
    return sum(runs)


class _Reader(object):
    """One export file and the images it lists."""

    def __init__(self, path, images_dir, class_of, split):
        self.path = path
        self.images_dir = images_dir
        self.class_of = class_of
        self.split = split

    def where(self, ann, position):
        return '{} annotation {}'.format(self.path, ann.get('id', '#{}'
                                                            .format(position))
                                         if isinstance(ann, dict) else
                                         '#{}'.format(position))

    def images(self, data):
        """{image id: (file name, (width, height), header path)}."""
        images = {}
        names = {}
        fix = ('pass --images with the folder that file_name is relative '
               'to, or export with the images')
        for entry in data['images']:
            if (not isinstance(entry, dict) or not _is_int(entry.get('id'))
                    or not _is_int(entry.get('width'))
                    or not _is_int(entry.get('height'))
                    or entry['width'] < 1 or entry['height'] < 1):
                raise UserError('{}: image entry {!r} lacks an integer id, '
                                'width or height; correct the export'.format(
                                    self.path, entry))
            where = '{} image {}'.format(self.path, entry['id'])
            name = export.relative_name(entry.get('file_name'), where)
            if entry['id'] in images:
                raise UserError('{}: image id {} is given twice; correct '
                                'the export'.format(self.path, entry['id']))
            if name in names:
                raise UserError('{}: file {} is listed twice (image ids {} '
                                'and {}); correct the export'.format(
                                    self.path, name, names[name],
                                    entry['id']))
            names[name] = entry['id']
            path = os.path.join(self.images_dir, *name.split('/'))
            header = export.image_file(path, where, fix)
            size = (entry['width'], entry['height'])
            export.check_size(where, size, header, path)
            images[entry['id']] = (name, size, path)
        return images

    def segmentation(self, ann, size, where):
        """The checked segmentation of an annotation: ('poly', [[x, y, ...],
        ...]), ('rle', dict) or ('compressed', dict)."""
        segm = ann.get('segmentation')
        width, height = size
        if isinstance(segm, list):
            if not segm:
                raise UserError('{}: the segmentation is empty (a box '
                                'only); draw a polygon or a mask, or remove '
                                'the annotation'.format(where))
            for poly in segm:
                if not export.number_list(poly) or len(poly) % 2:
                    raise UserError('{}: a polygon must be a list of x, y '
                                    'numbers, not {!r}; correct the export'
                                    .format(where, poly))
                if len(poly) < 6:
                    raise UserError('{}: a polygon has {} point(s), fewer '
                                    'than 3; remove it or draw it again'
                                    .format(where, len(poly) // 2))
                export.check_points(np.reshape(poly, (-1, 2)), size, where)
            return 'poly', segm
        if not isinstance(segm, dict) or 'counts' not in segm:
            raise UserError('{}: no segmentation (polygons or RLE), only {!r};'
                            ' draw a polygon or a mask, or remove the '
                            'annotation'.format(where, segm))
        if segm.get('size') != [height, width]:
            raise UserError('{}: the RLE mask is of size {!r} (height, '
                            'width) but its image is {}x{}; export again'
                            .format(where, segm.get('size'), width, height))
        counts = segm['counts']
        if isinstance(counts, list):
            if (not all(_is_int(c) and c >= 0 for c in counts)
                    or sum(counts) != width * height):
                raise UserError('{}: the RLE counts are not runs of '
                                'non-negative integers covering the {}x{} '
                                'image; export again'.format(
                                    where, width, height))
            return 'rle', segm
        if (not isinstance(counts, str)
                or _compressed_total(counts) != width * height):
            raise UserError('{}: the compressed RLE counts do not cover the '
                            '{}x{} image; export again'.format(
                                where, width, height))
        return 'compressed', segm

    def annotations(self, data, images, crowd):
        """{image id: [(kind, segmentation, value), ...]}, value the class
        id to draw or -1 (ignored)."""
        found = {image_id: [] for image_id in images}
        crowds = 0
        anns = data['annotations']
        if not isinstance(anns, list):
            raise UserError('{}: "annotations" is not a list; export it '
                            'again'.format(self.path))
        for position, ann in enumerate(anns):
            where = self.where(ann, position)
            if not isinstance(ann, dict):
                raise UserError('{} is not an object; correct the export'
                                .format(where))
            image_id = ann.get('image_id')
            if not _is_int(image_id) or image_id not in images:
                raise UserError('{}: image id {!r} is not in "images"; '
                                'export it again'.format(where, image_id))
            category = ann.get('category_id')
            if not _is_int(category) or category not in self.class_of:
                raise UserError('{}: unknown category id {!r}, not one of '
                                'the {} categories of the file; correct the '
                                'export'.format(where, category,
                                                len(self.class_of)))
            is_crowd = ann.get('iscrowd', 0)
            if is_crowd not in (0, 1) or isinstance(is_crowd, bool):
                raise UserError('{}: iscrowd is {!r}, not 0 or 1; correct '
                                'the export'.format(where, is_crowd))
            kind, segm = self.segmentation(ann, images[image_id][1], where)
            value = self.class_of[category]
            if is_crowd and crowd == 'ignore':
                value = -1
                crowds += 1
            found[image_id].append((kind, segm, value))
        return found, crowds


def _renderer(size, shapes):
    """The label map of one image: the annotations as pycocotools'
    ``COCO.annToMask`` makes their masks, drawn largest first."""
    width, height = size

    def render():
        rles = []
        for kind, segm, value in shapes:
            if kind == 'poly':
                rle = mask_utils.merge(mask_utils.frPyObjects(
                    segm, height, width))
            elif kind == 'rle':
                rle = mask_utils.frPyObjects(segm, height, width)
            else:
                rle = {'size': segm['size'],
                       'counts': segm['counts'].encode('ascii')}
            rles.append((-int(mask_utils.area(rle)), len(rles), rle, value))
        label = np.zeros((height, width), dtype=np.int32)
        for _, _, rle, value in sorted(rles, key=lambda r: r[:2]):
            label[mask_utils.decode(rle).astype(bool)] = value
        return label
    return render


def read_coco(files, images_dirs=None, crowd='ignore'):
    """Read and check COCO export files, one per split.

    Args:
        files (dict): Split (``'train'``, ``'val'``, ``'test'``) to its
            COCO JSON file.
        images_dirs (dict or None): Split to the folder its ``file_name``
            s are relative to; by default the JSON file's folder.
        crowd (str): ``'ignore'`` (crowd regions are ignored pixels) or
            ``'class'`` (drawn as their category).

    Returns:
        pspnet.annotations.export.Export: The classes (background first)
        and the items.

    Raises:
        UserError: The first problem, in one line: a file that is no COCO
        export, categories that differ between the files, an unknown
        category or image id, a missing image or one of another size, a
        polygon outside its image, an RLE of another size, an annotation
        without segmentation, an image listed twice.
    """
    loaded = {split: _load(path) for split, path in files.items()}
    categories = None
    for split, path in files.items():
        cats = _categories(path, loaded[split])
        if categories is None:
            categories, first = cats, path
        elif cats != categories:
            only = sorted(set(cats) ^ set(categories))[0]
            raise UserError(
                '{} and {} list different categories (id {} {!r} is in one '
                'only); export every split from the same project, with the '
                'same categories'.format(first, path, only[0], only[1]))
    names = [BACKGROUND] + [name for _, name in categories
                            if name != BACKGROUND]
    class_of = {cid: names.index(name) for cid, name in categories}
    splits = {}
    notes = []
    shapes_of = {}
    for split, path in files.items():
        data = loaded[split]
        folder = (images_dirs or {}).get(split) or os.path.dirname(
            os.path.abspath(path))
        reader = _Reader(path, folder, class_of, split)
        images = reader.images(data)
        if not images:
            raise UserError('{} lists no images; pass the export of a split '
                            'with images'.format(path))
        if 'annotations' not in data:
            if split != 'test':
                raise UserError('{} has no "annotations"; only a test split '
                                'may come without labels'.format(path))
            shapes, crowds = None, 0
        else:
            shapes, crowds = reader.annotations(data, images, crowd)
            shapes_of[split] = shapes
        items = []
        for image_id, (name, size, image_path) in images.items():
            stem, ext = os.path.splitext(name)
            items.append(export.Item(
                name=stem, ext=ext, size=size, image_path=image_path,
                source='{} (image {})'.format(path, name),
                render=None if shapes is None else _renderer(
                    size, shapes[image_id])))
        items.sort(key=lambda item: item.name)
        splits[split] = items
        if crowds:
            notes.append('{}: {} crowd region(s) drawn as ignored pixels'
                         .format(path, crowds))
        if shapes is not None:
            empty = sum(1 for s in shapes.values() if not s)
            if empty:
                notes.append('{}: {} image(s) without annotations, all '
                             'background'.format(path, empty))
    used = {value for found in shapes_of.values() for image in found.values()
            for _, _, value in image}
    if not shapes_of:  # only test splits: nothing says what is used
        used = set(range(len(names)))
    return export.with_generated_colors('COCO', names, splits, notes, used,
                                        'annotations')
