"""Tiny datasets in the real on-disk layouts of Cityscapes, ADE20K, VOC and
SBD (VOC's augmented training labels).

Each ``make_*`` function writes a few small images with their label files
under ``root`` and returns the folder to pass as ``data_dir``. Contents are
deterministic for a given ``seed``.

Labels are random blocks of class ids; every image holds ignored pixels,
and every class id when the image has enough blocks. With
``learnable=True`` every pixel of an image has the colour of its class
(plus a little noise), so a model can learn the labels from the images;
ignored pixels get random colours.
"""

import os

import cv2
import numpy as np
from PIL import Image

from pspnet.datasets import ade20k_semantic_segmentation_label_colors
from pspnet.datasets import cityscapes_labels
from pspnet.datasets import voc_palette

#: Cityscapes label ids of the 19 evaluated classes, in train-id order.
CITYSCAPES_EVALUATED_IDS = tuple(
    label.id for label in sorted(cityscapes_labels,
                                 key=lambda label: label.train_id)
    if not label.ignore_in_eval)
CITYSCAPES_IGNORED_IDS = tuple(
    label.id for label in cityscapes_labels
    if label.ignore_in_eval and label.id >= 0)
_CITYSCAPES_COLORS = {label.id: label.color for label in cityscapes_labels}
_CITYSCAPES_COLOR_LUT = np.zeros((256, 3), dtype=np.uint8)
for _label in cityscapes_labels:
    if _label.id >= 0:
        _CITYSCAPES_COLOR_LUT[_label.id] = _label.color

DEFAULT_CITIES = ('aachen', 'bochum', 'zurich')
#: Label ids of the classes with instances (person ... bicycle, caravan and
#: trailer included).
CITYSCAPES_INSTANCE_IDS = tuple(label.id for label in cityscapes_labels
                                if label.has_instances)


def cityscapes_instance_ids(rng, raw, block, crowd=0.25, per_class=3):
    """(H, W) uint16 ``*_gtFine_instanceIds.png`` values for the label map
    ``raw`` made of ``block`` x ``block`` blocks: each block of a class with
    instances is one of ``per_class`` instances of its class (``1000 * id +
    k``; an instance may hold several blocks, so sizes vary) or, with
    probability ``crowd``, a crowd region (the plain label id)."""
    ids = raw.astype(np.int64)
    h, w = raw.shape
    for y in range(0, h, block):
        for x in range(0, w, block):
            label_id = int(raw[y, x])
            if label_id not in CITYSCAPES_INSTANCE_IDS or rng.rand() < crowd:
                continue
            ids[y:y + block, x:x + block] = (1000 * label_id
                                             + rng.randint(per_class))
    return ids.astype(np.uint16)


def _block_labels(rng, size, values, ignored):
    """(H, W) map of random ``values`` and ``ignored`` values in square
    blocks, about 8 x 8 blocks per image; every ignored value appears, and
    every other value too when there are enough blocks."""
    h, w = size
    block = max(1, min(h, w) // 8)
    shape = (-(-h // block), -(-w // block))
    n_blocks = shape[0] * shape[1]
    values = np.concatenate([ignored, rng.permutation(values)])
    small = rng.choice(values, size=n_blocks)
    small[:min(len(values), n_blocks)] = values[:n_blocks]
    small = rng.permutation(small).reshape(shape)
    return np.repeat(np.repeat(small, block, 0), block, 1)[:h, :w]


def _image_for(rng, raw, colors, learnable):
    """(H, W, 3) uint8 RGB image for the raw label map ``raw``.

    ``colors`` maps raw values to RGB; values missing from it (ignored)
    get random colours."""
    h, w = raw.shape
    if not learnable:
        return rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
    img = rng.randint(0, 256, size=(h, w, 3)).astype(np.int32)
    for value in np.unique(raw):
        if int(value) in colors:
            img[raw == value] = colors[int(value)]
    img += rng.randint(-8, 9, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_rgb(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, np.ascontiguousarray(rgb[:, :, ::-1])):
        raise IOError('could not write ' + path)


def _write_gray(path, values):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, values.astype(np.uint8)):
        raise IOError('could not write ' + path)


def _write_palette(path, values, palette):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h, w = values.shape
    img = Image.frombytes('P', (w, h), values.astype(np.uint8).tobytes())
    img.putpalette([c for color in palette for c in color])
    img.save(path)


def make_cityscapes(root, splits=('train', 'val'), cities=DEFAULT_CITIES,
                    n_per_city=2, size=(64, 96), label_resolution='fine',
                    learnable=False, train_ids=None, seed=0,
                    instances=False, extra_ids=()):
    """Write ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` and
    ``gtFine/{split}/{city}/*_gtFine_labelIds.png`` (and ``*_color.png``,
    and with ``instances`` ``*_instanceIds.png``).

    Args:
        root (str): Folder to create the dataset in.
        splits (tuple of str): Splits to write.
        cities (tuple of str): City folders per split.
        n_per_city (int): Images per city.
        size (tuple of ints): (height, width) of every image.
        label_resolution ({'fine', 'coarse'}): ``gtFine`` or ``gtCoarse``.
        learnable (bool): Colour pixels by class (see module docstring).
        train_ids (tuple of ints): Train ids that appear in the labels
            (default: all 19); ignored ids appear too.
        seed (int): Random seed.
        instances (bool): Also write instance ids
            (:func:`cityscapes_instance_ids`).
        extra_ids (tuple of ints): More ignored label ids that appear
            (e.g. 29 and 30, caravan and trailer, which have instances).

    Returns:
        str: ``root``, the ``data_dir`` of the dataset.
    """
    rng = np.random.RandomState(seed)
    folder = 'gtFine' if label_resolution == 'fine' else 'gtCoarse'
    if train_ids is None:
        train_ids = range(19)
    values = [CITYSCAPES_EVALUATED_IDS[t] for t in train_ids]
    ignored = list(CITYSCAPES_IGNORED_IDS[:3]) + list(extra_ids)
    block = max(1, min(size) // 8)
    for split in splits:
        for city in cities:
            for k in range(n_per_city):
                stem = '{}_{:06d}_{:06d}'.format(city, k, 19)
                raw = _block_labels(rng, size, values, ignored)
                _write_rgb(os.path.join(root, 'leftImg8bit', split, city,
                                        stem + '_leftImg8bit.png'),
                           _image_for(rng, raw, {
                               i: _CITYSCAPES_COLORS[i]
                               for i in CITYSCAPES_EVALUATED_IDS},
                               learnable))
                label_dir = os.path.join(root, folder, split, city)
                _write_gray(os.path.join(
                    label_dir, '{}_{}_labelIds.png'.format(stem, folder)),
                    raw)
                _write_rgb(os.path.join(
                    label_dir, '{}_{}_color.png'.format(stem, folder)),
                    _CITYSCAPES_COLOR_LUT[raw])
                if instances:
                    path = os.path.join(label_dir, '{}_{}_instanceIds.png'
                                        .format(stem, folder))
                    if not cv2.imwrite(path, cityscapes_instance_ids(
                            rng, raw, block)):
                        raise IOError('could not write ' + path)
    return root


def make_ade20k(root, splits=('train', 'val'), n_images=3, size=(64, 96),
                learnable=False, class_ids=None, seed=0):
    """Write ``ADEChallengeData2016/images/{training,validation}/*.jpg`` and
    ``annotations/.../*.png`` (0: unlabelled, k: class k - 1).

    Args:
        root (str): Folder to create ``ADEChallengeData2016`` in.
        splits (tuple of str): ``'train'`` and/or ``'val'``.
        n_images (int): Images per split.
        size (tuple of ints): (height, width) of every image.
        learnable (bool): Colour pixels by class (see module docstring).
        class_ids (tuple of ints): Class ids (0 to 149) that appear
            (default: 0 to 149); unlabelled pixels appear too.
        seed (int): Random seed.

    Returns:
        str: ``root``, the ``data_dir`` of the dataset.
    """
    rng = np.random.RandomState(seed)
    if class_ids is None:
        class_ids = range(150)
    values = [c + 1 for c in class_ids]
    colors = {c + 1: ade20k_semantic_segmentation_label_colors[c]
              for c in range(150)}
    base = os.path.join(root, 'ADEChallengeData2016')
    for split in splits:
        folder = {'train': 'training', 'val': 'validation'}[split]
        for k in range(n_images):
            stem = 'ADE_{}_{:08d}'.format(split, k + 1)
            raw = _block_labels(rng, size, values, [0])
            _write_rgb(os.path.join(base, 'images', folder, stem + '.jpg'),
                       _image_for(rng, raw, colors, learnable))
            _write_gray(os.path.join(base, 'annotations', folder,
                                     stem + '.png'), raw)
    return root


def make_voc(root, splits=('train', 'val'), n_images=3, size=(64, 96),
             learnable=False, class_ids=None, seed=0):
    """Write a ``VOC2012`` folder: ``JPEGImages/*.jpg``, palette PNGs in
    ``SegmentationClass`` (255: border), and
    ``ImageSets/Segmentation/{split}.txt`` (``trainval.txt`` too when both
    train and val are written).

    Args:
        root (str): Folder to create ``VOCdevkit/VOC2012`` in.
        splits (tuple of str): ``'train'`` and/or ``'val'``.
        n_images (int): Images per split.
        size (tuple of ints): (height, width) of every image.
        learnable (bool): Colour pixels by class (see module docstring).
        class_ids (tuple of ints): Class ids (0 to 20) that appear
            (default: all); border pixels appear too.
        seed (int): Random seed.

    Returns:
        str: The ``VOCdevkit/VOC2012`` folder, the ``data_dir``.
    """
    rng = np.random.RandomState(seed)
    if class_ids is None:
        class_ids = range(21)
    values = list(class_ids)
    colors = {c: voc_palette[c] for c in range(21)}
    base = os.path.join(root, 'VOCdevkit', 'VOC2012')
    lists = {}
    for s, split in enumerate(splits):
        ids = ['2007_{:06d}'.format(100 * s + k) for k in range(n_images)]
        lists[split] = ids
        for id_ in ids:
            raw = _block_labels(rng, size, values, [255])
            _write_rgb(os.path.join(base, 'JPEGImages', id_ + '.jpg'),
                       _image_for(rng, raw, colors, learnable))
            _write_palette(os.path.join(base, 'SegmentationClass',
                                        id_ + '.png'), raw, voc_palette)
    if 'train' in lists and 'val' in lists:
        lists['trainval'] = sorted(lists['train'] + lists['val'])
    list_dir = os.path.join(base, 'ImageSets', 'Segmentation')
    os.makedirs(list_dir, exist_ok=True)
    for split, ids in lists.items():
        with open(os.path.join(list_dir, split + '.txt'), 'w') as f:
            f.write(''.join(id_ + '\n' for id_ in ids))
    return base


def write_sbd_label(path, segmentation, n_class=21):
    """Write an SBD class label file as SBD's ``cls/*.mat``: a MATLAB
    struct ``GTcls`` with ``Boundaries`` (a cell of one sparse boundary map
    per class but background), ``Segmentation`` (uint8 H x W) and
    ``CategoriesPresent`` (the classes present, 1-based)."""
    import scipy.io
    import scipy.sparse
    segmentation = np.asarray(segmentation, dtype=np.uint8)
    boundaries = np.empty((n_class - 1, 1), dtype=object)
    for c in range(1, n_class):
        mask = segmentation == c
        edge = mask & ~np.pad(mask, 1, mode='edge')[1:-1, 2:]
        boundaries[c - 1, 0] = scipy.sparse.csc_matrix(edge)
    present = np.array([c for c in np.unique(segmentation)
                        if 0 < c < n_class], dtype=np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, {'GTcls': {
        'Boundaries': boundaries, 'Segmentation': segmentation,
        'CategoriesPresent': present.reshape(-1, 1)}})


def make_voc_sbd(root, n_voc=3, n_sbd=(4, 3), size=(64, 96), learnable=False,
                 class_ids=None, borders=True, seed=0):
    """Write VOC 2012 (:func:`make_voc`, train and val) and SBD beside it
    (``root/benchmark_RELEASE/dataset/{img,cls,train.txt,val.txt}``), the
    layout of VOC's ``train_aug`` set.

    SBD's lists hold their own images (``n_sbd`` = (train, val) of them,
    ids ``2008_*``) and also some of VOC's: SBD train lists VOC's first
    train image and first val image, SBD val VOC's second val image, as
    the real SBD overlaps VOC 2012's train and val.

    Args:
        root (str): Folder to create ``VOCdevkit`` and
            ``benchmark_RELEASE`` in.
        n_voc (int): VOC images per split (at least 2).
        n_sbd (tuple of ints): SBD's own images in its train and val lists.
        size, learnable, class_ids, seed: As for :func:`make_voc`.
        borders (bool): SBD labels also hold 255 (ignored, as VOC's
            borders).

    Returns:
        dict: ``voc_dir`` (the VOC2012 folder), ``sbd_dir`` (the
        ``benchmark_RELEASE`` folder), ``voc`` (split to ids), ``sbd``
        (split to ids), ``sbd_labels`` (id to the (H, W) uint8 map written)
        and ``train_aug`` (the expected sorted ids).
    """
    voc_dir = make_voc(root, splits=('train', 'val'), n_images=n_voc,
                       size=size, learnable=learnable, class_ids=class_ids,
                       seed=seed)
    voc_ids = {split: ['2007_{:06d}'.format(100 * s + k)
                       for k in range(n_voc)]
               for s, split in enumerate(('train', 'val'))}
    rng = np.random.RandomState(seed + 1)
    values = list(range(21) if class_ids is None else class_ids)
    colors = {c: voc_palette[c] for c in range(21)}
    sbd_dir = os.path.join(root, 'benchmark_RELEASE')
    dataset = os.path.join(sbd_dir, 'dataset')
    own = {split: ['2008_{:06d}'.format(100 * s + k) for k in range(n)]
           for s, (split, n) in enumerate(zip(('train', 'val'), n_sbd))}
    lists = {'train': own['train'] + [voc_ids['train'][0],
                                      voc_ids['val'][0]],
             'val': own['val'] + [voc_ids['val'][1]]}
    labels = {}
    for split, ids in lists.items():
        for id_ in ids:
            raw = _block_labels(rng, size, values, [255] if borders else [])
            labels[id_] = raw.astype(np.uint8)
            _write_rgb(os.path.join(dataset, 'img', id_ + '.jpg'),
                       _image_for(rng, raw, colors, learnable))
            write_sbd_label(os.path.join(dataset, 'cls', id_ + '.mat'), raw)
        with open(os.path.join(dataset, split + '.txt'), 'w') as f:
            f.write(''.join(id_ + '\n' for id_ in sorted(ids)))
    train_aug = sorted((set(lists['train']) | set(lists['val'])
                        | set(voc_ids['train'])) - set(voc_ids['val']))
    return {'voc_dir': voc_dir, 'sbd_dir': sbd_dir, 'voc': voc_ids,
            'sbd': lists, 'sbd_labels': labels, 'train_aug': train_aug}


MAKERS = {'cityscapes': make_cityscapes, 'ade20k': make_ade20k,
          'voc': make_voc}


def make_dataset(name, root, **kwargs):
    """``make_cityscapes``, ``make_ade20k`` or ``make_voc`` by name."""
    return MAKERS[name](root, **kwargs)


def make_own_dataset(root, layout='folders', classes=('background', 'cat',
                                                      'dog'),
                     n_images=3, size=(64, 96), palette=True,
                     label_map=None, ignore_label=255, label_suffix='_mask',
                     colors=None, splits=('train', 'val'), learnable=True,
                     extra=None, seed=0):
    """Write a dataset described by ``root/dataset.json``.

    Args:
        root (str): Folder to create the dataset in.
        layout ({'folders', 'list'}): ``images/{split}/*.jpg`` with
            ``labels/{split}/*{label_suffix}.png``, or the same files listed
            in ``lists/{split}.txt`` (paths relative to ``lists``).
        classes (tuple of str): Class names.
        n_images (int): Images per split.
        size (tuple of ints): (height, width).
        palette (bool): Palette PNG labels (VOC's palette), else 8-bit grey.
        label_map (dict or None): Class index to the value stored in the
            files (written to the description as stored value -> index).
        ignore_label (int): Stored value of ignored pixels.
        label_suffix (str): Suffix of label stems (folder layout).
        colors (list or None): ``colors`` of the description.
        splits (tuple of str): Splits to write.
        learnable (bool): Colour pixels by class (see module docstring).
        extra (dict or None): More keys of the description.
        seed (int): Random seed.

    Returns:
        str: The path of ``dataset.json``.
    """
    import json
    rng = np.random.RandomState(seed)
    n_class = len(classes)
    stored = {c: (label_map or {}).get(c, c) for c in range(n_class)}
    colors_of = {stored[c]: voc_palette[(c + 1) % 256] for c in range(n_class)}
    desc = {'classes': list(classes)}
    if colors is not None:
        desc['colors'] = colors
    if ignore_label != 255:
        desc['ignore_label'] = ignore_label
    if label_map is not None:
        desc['label_map'] = {str(v): c for c, v in stored.items()}
    for split in splits:
        rows = []
        for k in range(n_images):
            stem = '{}_{:03d}'.format(split, k)
            raw = _block_labels(rng, size, list(stored.values()),
                                [ignore_label])
            img_rel = os.path.join('images', split, stem + '.jpg')
            label_rel = os.path.join('labels', split,
                                     stem + label_suffix + '.png')
            _write_rgb(os.path.join(root, img_rel),
                       _image_for(rng, raw, colors_of, learnable))
            if palette:
                _write_palette(os.path.join(root, label_rel), raw,
                               voc_palette)
            else:
                _write_gray(os.path.join(root, label_rel), raw)
            rows.append((img_rel, label_rel))
        if layout == 'list':
            os.makedirs(os.path.join(root, 'lists'), exist_ok=True)
            with open(os.path.join(root, 'lists', split + '.txt'), 'w') as f:
                for img_rel, label_rel in rows:
                    f.write('../{} ../{}\n'.format(img_rel, label_rel))
            desc[split] = {'list': 'lists/{}.txt'.format(split)}
        else:
            desc[split] = {'images': 'images/' + split,
                           'labels': 'labels/' + split}
            if label_suffix:
                desc[split]['label_suffix'] = label_suffix
    desc.update(extra or {})
    path = os.path.join(root, 'dataset.json')
    with open(path, 'w') as f:
        json.dump(desc, f, indent=2)
    return path


# Files in less common encodings ---------------------------------------------

#: Pillow's transposition that shows a stored picture under each EXIF
#: orientation (as ``PIL.ImageOps.exif_transpose`` applies it).
EXIF_TRANSPOSITIONS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# The transposition that undoes each one.
_UNDO = {None: None, Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
         Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270}


def stored_for_display(displayed, orientation):
    """The picture to store with EXIF ``orientation`` so that viewers show
    ``displayed`` (an (H, W) or (H, W, C) uint8 or uint16 array), by
    Pillow's transpositions."""
    method = EXIF_TRANSPOSITIONS[orientation]
    method = _UNDO.get(method, method)
    if method is None:
        return np.array(displayed)
    image = Image.fromarray(np.ascontiguousarray(displayed))
    return np.asarray(image.transpose(method))


def write_oriented(path, displayed, orientation, **save_options):
    """Write an image file (format by extension: JPEG, PNG, WebP, TIFF)
    whose EXIF orientation is ``orientation`` and which viewers show as
    ``displayed`` ((H, W, 3) RGB or (H, W) grey uint8): its pixels are
    stored turned back."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored_for_display(displayed, orientation)).save(
        path, exif=exif.tobytes(), **save_options)


def write_png(path, values, bit_depth, color_type=0, palette=None):
    """Write a PNG of any bit depth and colour type from raw sample values,
    for the encodings Pillow and OpenCV do not write (2- and 4-bit grey).

    Args:
        path (str): Output file.
        values (numpy.ndarray): (H, W) or (H, W, C) samples, each below
            ``2 ** bit_depth``.
        bit_depth (int): 1, 2, 4, 8 or 16.
        color_type (int): 0 grey, 2 RGB, 3 palette, 4 grey and alpha, 6
            RGBA (the PNG specification's numbers).
        palette (sequence or None): RGB triples of a palette image.
    """
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    values = np.asarray(values)
    h, w = values.shape[:2]
    samples = values.reshape(h, -1).astype(np.int64)
    assert samples.min() >= 0 and samples.max() < 2 ** bit_depth
    if bit_depth < 8:
        rows = np.packbits(np.unpackbits(
            samples.astype(np.uint8)[:, :, None], axis=2)[:, :, -bit_depth:]
            .reshape(h, -1), axis=1)
    else:
        rows = samples.astype('>u{}'.format(bit_depth // 8)).view(
            np.uint8).reshape(h, -1)
    raw = b''.join(b'\0' + row.tobytes() for row in rows)
    data = (b'\x89PNG\r\n\x1a\n'
            + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, bit_depth,
                                         color_type, 0, 0, 0)))
    if palette is not None:
        data += chunk(b'PLTE', bytes(int(c) for rgb in palette for c in rgb))
    data += chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
