"""Annotation tools' exports, generated: COCO JSON (polygons, compressed
and uncompressed RLE, crowd regions), labelme JSON files (every shape
type, images beside them or embedded) and CVAT "Segmentation mask 1.1"
folders, with random shapes, sizes and names (unicode included).

Each maker returns what the export is made of, so that the tests can
compute the expected label maps on their own: the COCO file's path (for
pycocotools' ``COCO.annToMask``), the labelme shapes (for a drawing as
labelme's ``shape_to_mask`` does it), CVAT's class-id arrays.
"""

import base64
import io
import json
import os

import numpy as np
from PIL import Image

#: Names with characters beyond ASCII, for files and classes.
UNICODE_NAMES = ('café', '猫', 'žluťoučký kůň', 'Ωmega', 'naïve_photo')


def write_image(path, size, rng, fmt=None):
    """A random RGB picture of (width, height) ``size`` at ``path``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = rng.randint(0, 256, (size[1], size[0], 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def random_polygon(rng, size, n_points=None, margin=0.0):
    """(N, 2) float64 vertices of a star-shaped polygon inside the
    (width, height) image (``margin`` pixels may lie outside)."""
    width, height = size
    n = n_points or int(rng.randint(3, 11))
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(2, max(width, height) / 2, n)
    xy = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)],
                  axis=1)
    low = -margin
    return np.stack([np.clip(xy[:, 0], low, width + margin),
                     np.clip(xy[:, 1], low, height + margin)], axis=1)


def random_mask(rng, size, holes=True):
    """(H, W) uint8 0/1: a random rectangle, with random holes."""
    width, height = size
    mask = np.zeros((height, width), dtype=np.uint8)
    x0, y0 = rng.randint(0, width - 2), rng.randint(0, height - 2)
    x1, y1 = rng.randint(x0 + 2, width + 1), rng.randint(y0 + 2, height + 1)
    mask[y0:y1, x0:x1] = 1
    if holes:
        for _ in range(int(rng.randint(1, 4))):
            hx, hy = rng.randint(0, width), rng.randint(0, height)
            mask[hy:hy + int(rng.randint(1, 6)),
                 hx:hx + int(rng.randint(1, 6))] = 0
    return mask


def uncompressed_rle(mask):
    """COCO's uncompressed RLE of an (H, W) 0/1 mask: run lengths in
    column-major order, starting with a run of zeros."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order='F')
    counts = []
    value, run = 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return {'counts': [int(c) for c in counts],
            'size': [int(mask.shape[0]), int(mask.shape[1])]}


def compressed_rle(mask):
    """pycocotools' compressed RLE (``counts`` a string) of a 0/1 mask."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'counts': rle['counts'].decode('ascii'),
            'size': [int(v) for v in rle['size']]}


def make_coco(root, rng, n_images=4, categories=None, crowd=True,
              name='train', image_dir=None, unicode_names=True,
              first_id=1, sizes=(24, 80)):
    """A COCO export: ``root/{name}.json`` and the images in
    ``image_dir`` (default beside it), every kind of segmentation.

    Args:
        root (str): Folder of the JSON file.
        rng (numpy.random.RandomState): The draw.
        n_images (int): Images.
        categories (list or None): ``[(id, name), ...]``; default three
            with unordered ids and a unicode name.
        crowd (bool): Also crowd regions (uncompressed RLE).
        name (str): The JSON file's stem.
        image_dir (str or None): Folder of the images.
        unicode_names (bool): Some file names beyond ASCII, in a
            subfolder.
        first_id (int): First image id (distinct ids across files).
        sizes (tuple of ints): Range of the widths and heights.

    Returns:
        dict: ``json`` (its path), ``images`` (the folder), ``data`` (the
        document), ``categories``.
    """
    image_dir = image_dir or root
    categories = categories or [(7, 'cat'), (2, 'dog'), (11, UNICODE_NAMES[1])]
    images, anns = [], []
    for k in range(n_images):
        size = (int(rng.randint(*sizes)), int(rng.randint(*sizes)))
        if unicode_names and k % 2:
            file_name = 'sub/{}_{}_{}.jpg'.format(
                UNICODE_NAMES[k % len(UNICODE_NAMES)], name, k)
        else:
            file_name = '{}_{}.png'.format(name, k)
        write_image(os.path.join(image_dir, *file_name.split('/')), size,
                    rng)
        image_id = first_id + k
        images.append({'id': image_id, 'file_name': file_name,
                       'width': size[0], 'height': size[1]})
        for j in range(int(rng.randint(1, 6))):
            kind = ('poly', 'rle', 'compressed')[int(rng.randint(3))]
            if kind == 'poly':
                segm = [random_polygon(rng, size).ravel().tolist()
                        for _ in range(int(rng.randint(1, 3)))]
            elif kind == 'rle':
                segm = uncompressed_rle(random_mask(rng, size))
            else:
                segm = compressed_rle(random_mask(rng, size))
            anns.append({'id': len(anns) + 100, 'image_id': image_id,
                         'category_id': categories[int(rng.randint(
                             len(categories)))][0],
                         'iscrowd': 0, 'segmentation': segm,
                         'area': 0.0, 'bbox': [0, 0, 1, 1]})
        if crowd and rng.rand() < 0.7:
            anns.append({'id': len(anns) + 100, 'image_id': image_id,
                         'category_id': categories[0][0], 'iscrowd': 1,
                         'segmentation': uncompressed_rle(random_mask(
                             rng, size, holes=False))})
    # The order of the file is not the order of the images.
    order = rng.permutation(len(anns))
    data = {'info': {'description': 'generated'},
            'images': images,
            'annotations': [anns[i] for i in order],
            'categories': [{'id': cid, 'name': cname, 'supercategory': ''}
                           for cid, cname in categories]}
    path = os.path.join(root, name + '.json')
    os.makedirs(root, exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f, ensure_ascii=False)
    return {'json': path, 'images': image_dir, 'data': data,
            'categories': categories}


def _png_base64(array):
    out = io.BytesIO()
    Image.fromarray(array).save(out, format='PNG')
    return base64.b64encode(out.getvalue()).decode('ascii')


def random_shape(rng, size, label, kind):
    """A labelme shape of ``kind`` inside the (width, height) image."""
    width, height = size
    if kind == 'polygon':
        points = random_polygon(rng, size).tolist()
    elif kind == 'rectangle':
        a = [rng.uniform(0, width), rng.uniform(0, height)]
        b = [rng.uniform(0, width), rng.uniform(0, height)]
        points = [a, b]  # any corner first
    elif kind == 'circle':
        c = [rng.uniform(0, width), rng.uniform(0, height)]
        points = [c, [float(np.clip(c[0] + rng.uniform(-15, 15), 0, width)),
                      float(np.clip(c[1] + rng.uniform(-15, 15), 0,
                                    height))]]
    elif kind == 'mask':
        x1 = int(rng.randint(0, width - 3))
        y1 = int(rng.randint(0, height - 3))
        x2 = int(rng.randint(x1 + 1, width))
        y2 = int(rng.randint(y1 + 1, height))
        mask = rng.rand(y2 - y1 + 1, x2 - x1 + 1) < 0.6
        shape = {'label': label, 'points': [[x1, y1], [x2, y2]],
                 'group_id': None, 'description': '', 'shape_type': 'mask',
                 'flags': {}, 'mask': _png_base64(mask)}
        return shape
    elif kind == 'point':
        points = [[rng.uniform(0, width), rng.uniform(0, height)]]
    else:  # line, linestrip
        points = [[rng.uniform(0, width), rng.uniform(0, height)]
                  for _ in range(2 if kind == 'line' else 4)]
    return {'label': label, 'points': points, 'group_id': None,
            'description': '', 'shape_type': kind, 'flags': {}}


#: Shape types drawn, and those with no area.
LABELME_DRAWN = ('polygon', 'rectangle', 'circle', 'mask')
LABELME_SKIPPED = ('line', 'linestrip', 'point')


def make_labelme(folder, rng, n_files=4, labels=None, embedded=None,
                 images_beside=False, prefix=''):
    """A folder of labelme JSON files with every shape type.

    Args:
        folder (str): Folder of the JSON files (a subfolder used too).
        rng (numpy.random.RandomState): The draw.
        n_files (int): Files.
        labels (sequence of str): The shapes' labels.
        embedded (bool or None): Images in ``imageData``; None: some.
        images_beside (bool): External images beside the JSON files
            (``imagePath`` a bare name) rather than in ``../images_X``.
        prefix (str): Start of the file names.

    Returns:
        list of dict: Per file: ``json`` (path), ``size``, ``shapes``
        (as written), ``image`` (the external image's path or None).
    """
    labels = labels or ['cat', UNICODE_NAMES[0], 'dog']
    files = []
    for k in range(n_files):
        size = (int(rng.randint(20, 70)), int(rng.randint(20, 70)))
        sub = 'part' if k % 3 == 2 else ''
        stem = '{}{}_{}'.format(prefix, UNICODE_NAMES[k % len(
            UNICODE_NAMES)] if k % 2 else 'img', k)
        json_path = os.path.join(folder, sub, stem + '.json')
        os.makedirs(os.path.dirname(json_path), exist_ok=True)
        shapes = []
        kinds = list(LABELME_DRAWN + LABELME_SKIPPED)
        # The first file has every shape type, the others random ones.
        chosen = [kinds[int(i)] for i in rng.randint(
            0, len(kinds), int(rng.randint(2, 8)))]
        for kind in (kinds + chosen if k == 0 else chosen):
            label = labels[int(rng.randint(len(labels)))]
            shapes.append(random_shape(rng, size, label, kind))
        embed = (k % 2 == 0) if embedded is None else embedded
        data = {'version': '5.5.0', 'flags': {}, 'shapes': shapes,
                'imageHeight': size[1], 'imageWidth': size[0]}
        image_path = None
        if embed:
            out = io.BytesIO()
            pixels = rng.randint(0, 256, (size[1], size[0], 3)).astype(
                np.uint8)
            Image.fromarray(pixels).save(out, format='PNG' if k % 4 else
                                         'JPEG')
            data['imageData'] = base64.b64encode(out.getvalue()).decode(
                'ascii')
            data['imagePath'] = stem + '.png'  # not there: imageData wins
        else:
            if images_beside:
                image_path = os.path.join(os.path.dirname(json_path),
                                          stem + '.jpg')
                data['imagePath'] = stem + '.jpg'
            else:
                image_path = os.path.join(
                    os.path.dirname(os.path.abspath(folder)),
                    'images_' + os.path.basename(folder), stem + '.jpg')
                data['imagePath'] = os.path.relpath(
                    image_path, os.path.dirname(json_path))
            write_image(image_path, size, rng)
            data['imageData'] = None
        with open(json_path, 'w', encoding='utf-8') as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
        files.append({'json': json_path, 'size': size, 'shapes': shapes,
                      'image': image_path, 'data': data})
    return files


def make_cvat(root, rng, subsets=None, names=None, colors=None,
              with_images=True, image_dir=None):
    """A CVAT "Segmentation mask 1.1" export folder.

    Args:
        root (str): The export folder.
        rng (numpy.random.RandomState): The draw.
        subsets (dict or None): Subset name to its number of images;
            default ``{'default': 5}``.
        names, colors: The labelmap (``background`` first by default).
        with_images (bool): Images in ``JPEGImages``, else in
            ``image_dir``.
        image_dir (str or None): Where the images go without
            ``with_images``.

    Returns:
        dict: ``names``, ``colors``, ``labels`` ({subset: {name: (H, W)
        class ids}}).
    """
    names = names or ['background', 'cat', UNICODE_NAMES[2], 'road']
    colors = colors or [(0, 0, 0), (255, 0, 0), (0, 128, 255),
                        (128, 64, 128)][:len(names)]
    subsets = subsets or {'default': 5}
    os.makedirs(os.path.join(root, 'ImageSets', 'Segmentation'))
    with open(os.path.join(root, 'labelmap.txt'), 'w',
              encoding='utf-8') as f:
        f.write('# label:color_rgb:parts:actions\n')
        for name, rgb in zip(names, colors):
            f.write('{}:{}::\n'.format(name, ','.join(str(c) for c in rgb)))
    labels = {}
    palette = np.asarray(colors, dtype=np.uint8)
    for subset, count in subsets.items():
        lines = []
        labels[subset] = {}
        for k in range(count):
            name = '{}_{}'.format(subset, k) if k % 2 else \
                'frames/{}_{}_{}'.format(UNICODE_NAMES[k % 5], subset, k)
            size = (int(rng.randint(16, 60)), int(rng.randint(16, 60)))
            ids = rng.randint(0, len(names), (size[1], size[0]))
            labels[subset][name] = ids
            mask_path = os.path.join(root, 'SegmentationClass',
                                     *name.split('/')) + '.png'
            os.makedirs(os.path.dirname(mask_path), exist_ok=True)
            Image.fromarray(palette[ids]).save(mask_path)
            folder = (os.path.join(root, 'JPEGImages') if with_images
                      else image_dir)
            write_image(os.path.join(folder, *name.split('/')) + '.jpg',
                        size, rng)
            lines.append(name)
        with open(os.path.join(root, 'ImageSets', 'Segmentation',
                               subset + '.txt'), 'w', encoding='utf-8') as f:
            f.write('\n'.join(lines) + '\n')
    return {'names': names, 'colors': colors, 'labels': labels}
