"""A user's dataset, described by a JSON file (``--dataset PATH.json``).

The file names the classes and where each split's images and label maps
are; :func:`load_description` reads and checks it and returns a
:class:`~pspnet.datasets.spec.DatasetSpec`, so a user's dataset is one
more entry of the registry. Format (every path relative to the JSON
file's folder)::

    {
      "classes": ["background", "cat", "dog"],       # required, n_class
      "colors": [[0, 0, 0], [255, 0, 0], [0, 0, 255]],  # optional RGB
      "ignore_label": 255,                           # optional, default 255
      "label_map": {"0": 0, "7": 1, "9": 2, "4": -1},  # optional
      "label_format": "index",                       # or "rgb"
      "input_size": 473,                             # optional
      "iterations": 30000,                           # optional
      "train": {"images": "img/train", "labels": "ann/train",
                "label_suffix": "_mask"},
      "val": {"list": "val.txt"},
      "test": {"images": "img/test"}                 # optional; labels
    }                                                # optional there

A folder split pairs ``images/REL/STEM.EXT`` with
``labels/REL/STEM{label_suffix}{label_extension}`` (subfolders included);
a list split reads lines ``IMAGE LABEL`` whose paths are relative to the
list file's folder (or to the split's ``root``). Label maps are
single-channel PNGs (1-, 2-, 4-, 8- or 16-bit grey read as their stored
values, palette PNGs as their palette indices) of class indices, or of
the stored values of ``label_map``; ``ignore_label`` pixels are ignored.
With ``"label_format": "rgb"`` label maps are colour-coded instead: each
pixel's colour is one of ``colors`` (required then, distinct), or the
optional ``"ignore_color"``, and names that class (no ``label_map`` nor
``ignore_label`` then).
Images and label maps are used as displayed (their EXIF orientation
applied), so a label map is drawn on its image as displayed. Everything
else is refused with one line, before any work: see
:func:`load_description` and :meth:`DescribedDataset.check_labels`. A key
given twice in an object of the file is refused too (JSON would keep the
last one).
"""

import hashlib
import json
import os

import numpy as np

from pspnet.atomic import save_json_atomic
from pspnet.cache import cache_directory
from pspnet.cache import cache_lock
from pspnet.datasets import base
from pspnet.datasets.spec import DatasetSpec
from pspnet.datasets.spec import MIN_INPUT_SIZE
from pspnet.errors import UserError
from pspnet.palette import generate_label_colors

#: Network input size (and training crop) of a described dataset whose
#: file gives none (the one of ADE20K and VOC).
DESCRIPTION_INPUT_SIZE = 473
#: Training iterations (batch 16) of a described dataset whose file gives
#: none: the Cityscapes recipe's.
DESCRIPTION_ITERATIONS = 90000
DEFAULT_IGNORE_LABEL = 255
DEFAULT_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif',
                            '.tiff', '.webp')
DEFAULT_LABEL_EXTENSION = '.png'
SPLITS = ('train', 'val', 'test')

#: Values of ``label_format``: label maps of stored values (class ids,
#: or the keys of ``label_map``), or colour-coded label maps.
LABEL_FORMATS = ('index', 'rgb')

_TOP_KEYS = ('classes', 'colors', 'ignore_label', 'label_map',
             'label_format', 'ignore_color', 'input_size', 'iterations',
             'name') + SPLITS
_FOLDER_KEYS = ('images', 'labels', 'label_suffix', 'image_extensions',
                'label_extension')
_LIST_KEYS = ('list', 'root')
# Largest value a 16-bit label PNG holds.
_MAX_STORED = 65535
# Version of the label reading and checking whose results the cache keeps
# (2: 1/2/4-bit labels read as their stored values, sizes and pixels as
# displayed; 3: the ignored pixels counted too, colour-coded labels).
_CHECK_VERSION = 3


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class _Object(dict):
    """A JSON object that remembers the keys it was given more than once
    (:func:`json.load` keeps the last value of a repeated key)."""

    def __init__(self, pairs):
        super(_Object, self).__init__()
        self.repeated = []
        for key, value in pairs:
            if key in self and key not in self.repeated:
                self.repeated.append(key)
            self[key] = value


def _repeated_key(value, where=None):
    """(key, where) of the first key given twice in an object of a
    document read with :class:`_Object`, in document order (``where`` the
    object's path, such as ``label_map`` or ``colors[2]``, or 'the file'),
    or None."""
    if isinstance(value, _Object):
        if value.repeated:
            return value.repeated[0], where or 'the file'
        children = (('{}.{}'.format(where, key) if where else key, child)
                    for key, child in value.items())
    elif isinstance(value, list):
        children = (('{}[{}]'.format(where or '', i), child)
                    for i, child in enumerate(value))
    else:
        return None
    for child_where, child in children:
        found = _repeated_key(child, child_where)
        if found is not None:
            return found
    return None


class _Checker(object):
    """Raises one-line errors about the description file ``path``."""

    def __init__(self, path):
        self.path = path

    def fail(self, message, fix='fix the dataset file'):
        raise UserError('dataset file {}: {}; {}'.format(
            self.path, message, fix))

    def keys(self, obj, allowed, where):
        if not isinstance(obj, dict):
            self.fail('{} must be a JSON object, not {}'.format(
                where, type(obj).__name__))
        unknown = sorted(set(obj) - set(allowed))
        if unknown:
            self.fail('unknown key {!r} in {}'.format(unknown[0], where),
                      'use only {}'.format(', '.join(allowed)))

    def integer(self, obj, key, low, high=None):
        value = obj[key]
        if not _is_int(value) or value < low or (high is not None
                                                 and value > high):
            self.fail('{!r} must be an integer {}, not {!r}'.format(
                key, 'of at least {}'.format(low) if high is None
                else 'in [{}, {}]'.format(low, high), value))
        return value

    def string(self, obj, key, where):
        value = obj[key]
        if not isinstance(value, str) or not value:
            self.fail('{!r} of {} must be a non-empty string, not {!r}'
                      .format(key, where, value))
        return value


def _classes(check, desc):
    if 'classes' not in desc:
        check.fail('no "classes" list', 'add "classes": [NAME, ...]')
    names = desc['classes']
    if (not isinstance(names, list) or not names
            or not all(isinstance(n, str) and n for n in names)):
        check.fail('"classes" must be a non-empty list of non-empty strings')
    for i, name in enumerate(names):
        if name in names[:i]:
            check.fail('class name {!r} is listed twice'.format(name))
    return tuple(names)


def _colors(check, desc, n_class):
    if 'colors' not in desc:
        return tuple(tuple(int(c) for c in rgb)
                     for rgb in generate_label_colors(n_class))
    colors = desc['colors']
    if not isinstance(colors, list) or len(colors) != n_class:
        check.fail('"colors" must list one [R, G, B] per class ({}), not {}'
                   .format(n_class, len(colors) if isinstance(colors, list)
                           else repr(colors)))
    for i, rgb in enumerate(colors):
        if (not isinstance(rgb, list) or len(rgb) != 3
                or not all(_is_int(c) and 0 <= c <= 255 for c in rgb)):
            check.fail('colour {} of class {!r} must be [R, G, B] with '
                       'integers in [0, 255], not {!r}'.format(
                           i, desc['classes'][i], rgb))
    return tuple(tuple(rgb) for rgb in colors)


def _lookup_table(check, desc, n_class, ignore):
    """(V,) int32 table from stored values to class ids, -1 ignored,
    ``n_class`` for values that are neither."""
    if 'label_map' not in desc:
        if ignore < n_class:
            check.fail('ignore_label {} is also the index of class {!r}'
                       .format(ignore, desc['classes'][ignore]),
                       'use an ignore_label of at least {}, or a label_map'
                       .format(n_class))
        table = np.full(max(ignore, n_class) + 1, n_class, dtype=np.int32)
        table[:n_class] = np.arange(n_class)
        table[ignore] = -1
        return table
    mapping = desc['label_map']
    if not isinstance(mapping, dict) or not mapping:
        check.fail('"label_map" must be a non-empty object of "stored '
                   'value": class index')
    pairs = []
    keys_of = {}
    for key, value in mapping.items():
        try:
            stored = int(key)
        except ValueError:
            stored = -1
        if not 0 <= stored <= _MAX_STORED or str(stored) != key.strip():
            check.fail('label_map key {!r} is not a stored value (an '
                       'integer in [0, {}])'.format(key, _MAX_STORED))
        if stored in keys_of:
            check.fail('label_map keys {!r} and {!r} are the same stored '
                       'value {}'.format(keys_of[stored], key, stored),
                       'keep one entry per stored value')
        keys_of[stored] = key
        if stored == ignore:
            check.fail('label_map maps the ignore_label {}'.format(ignore))
        if not _is_int(value) or not -1 <= value < n_class:
            check.fail('label_map maps {} to {!r}, which is no class index '
                       '(0 to {}) nor -1 (ignored)'.format(
                           key, value, n_class - 1))
        pairs.append((stored, value))
    table = np.full(max([ignore] + [s for s, _ in pairs]) + 1, n_class,
                    dtype=np.int32)
    for stored, value in pairs:
        table[stored] = value
    table[ignore] = -1
    return table


def _stored_values(desc, n_class, ignore):
    """The values a label map of stored values may hold, for messages."""
    if 'label_map' in desc:
        stored = sorted(int(k) for k in desc['label_map'])
        return 'the label_map\'s values {}{} and {} to ignore'.format(
            ', '.join(str(v) for v in stored[:8]),
            ', ...' if len(stored) > 8 else '', ignore)
    return '0 to {} for the classes, {} to ignore'.format(n_class - 1,
                                                          ignore)


def _color_table(check, desc):
    """The :class:`~pspnet.datasets.base.ColorTable` of a description of
    colour-coded label maps, and its ignore colour (or None)."""
    for key in ('label_map', 'ignore_label'):
        if key in desc:
            check.fail('"{}" is for label maps of stored values, not the '
                       'colour-coded ones of "label_format": "rgb"'.format(
                           key), 'remove it (use "ignore_color" for ignored '
                       'pixels)')
    if 'colors' not in desc:
        check.fail('"label_format": "rgb" needs "colors", the colour of '
                   'each class in the label maps', 'add "colors": [[R, G, '
                   'B], ...], one per class')
    colors = [tuple(c) for c in desc['colors']]
    for i, rgb in enumerate(colors):
        if rgb in colors[:i]:
            check.fail('classes {!r} and {!r} have the same colour {} (a '
                       'colour-coded label map could not tell them apart)'
                       .format(desc['classes'][colors.index(rgb)],
                               desc['classes'][i], list(rgb)),
                       'give each class its own colour')
    ignore = desc.get('ignore_color')
    if ignore is not None:
        if (not isinstance(ignore, list) or len(ignore) != 3
                or not all(_is_int(c) and 0 <= c <= 255 for c in ignore)):
            check.fail('"ignore_color" must be [R, G, B] with integers in '
                       '[0, 255], not {!r}'.format(ignore))
        if tuple(ignore) in colors:
            check.fail('"ignore_color" {} is also the colour of class {!r}'
                       .format(ignore, desc['classes'][colors.index(
                           tuple(ignore))]), 'give ignored pixels a colour '
                       'of their own')
    return (base.ColorTable(colors, [] if ignore is None else [ignore]),
            ignore)


def _folder_pairs(check, split, spec, root):
    images = os.path.join(root, check.string(spec, 'images', split))
    if 'labels' not in spec:
        labels = None
    else:
        labels = os.path.join(root, check.string(spec, 'labels', split))
    suffix = spec.get('label_suffix', '')
    if not isinstance(suffix, str):
        check.fail('"label_suffix" of {} must be a string'.format(split))
    exts = spec.get('image_extensions', list(DEFAULT_IMAGE_EXTENSIONS))
    if (not isinstance(exts, list) or not exts
            or not all(isinstance(e, str) and e for e in exts)):
        check.fail('"image_extensions" of {} must be a list of extensions '
                   'such as ".jpg"'.format(split))
    exts = tuple(e.lower() if e.startswith('.') else '.' + e.lower()
                 for e in exts)
    label_ext = spec.get('label_extension', DEFAULT_LABEL_EXTENSION)
    if not isinstance(label_ext, str) or not label_ext:
        check.fail('"label_extension" of {} must be a string such as '
                   '".png"'.format(split))
    if not label_ext.startswith('.'):
        label_ext = '.' + label_ext
    for what, folder in (('images', images), ('labels', labels)):
        if folder is not None and not os.path.isdir(folder):
            check.fail('{} folder {} of split {} does not exist'.format(
                what, folder, split), 'create it or correct the path')

    def walk(folder, keep):
        found = {}
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in sorted(filenames):
                stem, ext = os.path.splitext(name)
                key = keep(stem, ext.lower())
                if key is None:
                    continue
                rel = os.path.relpath(os.path.join(dirpath, key), folder)
                path = os.path.join(dirpath, name)
                if rel in found:
                    check.fail('{} and {} have the same stem in split {}'
                               .format(found[rel], path, split),
                               'keep one file per stem')
                found[rel] = path
        return found

    img_files = walk(images, lambda stem, ext: stem if ext in exts
                     else None)
    if labels is None:
        if not img_files:
            check.fail('no {} images in {} (split {})'.format(
                '/'.join(exts), images, split), 'add images or set '
                '"image_extensions"')
        keys = sorted(img_files)
        return [img_files[k] for k in keys], [None] * len(keys)
    label_files = walk(labels, lambda stem, ext: stem[:len(stem)
                       - len(suffix)] if ext == label_ext.lower()
                       and stem.endswith(suffix) and len(stem) > len(suffix)
                       else None)
    if not img_files:
        check.fail('no {} images in {} (split {})'.format(
            '/'.join(exts), images, split), 'add images or set '
            '"image_extensions"')
    for rel in sorted(img_files):
        if rel not in label_files:
            check.fail('image {} has no label {} (split {})'.format(
                img_files[rel], os.path.join(labels, rel + suffix
                                             + label_ext), split),
                'add the label map or remove the image')
    for rel in sorted(label_files):
        if rel not in img_files:
            check.fail('label {} has no image in {} (split {})'.format(
                label_files[rel], images, split),
                'add the image or remove the label map')
    keys = sorted(img_files)
    return [img_files[k] for k in keys], [label_files[k] for k in keys]


def _list_pairs(check, split, spec, root):
    list_path = os.path.join(root, check.string(spec, 'list', split))
    if not os.path.isfile(list_path):
        check.fail('list file {} of split {} does not exist'.format(
            list_path, split), 'create it or correct the path')
    base_dir = os.path.dirname(list_path)
    if 'root' in spec:
        base_dir = os.path.normpath(os.path.join(
            root, check.string(spec, 'root', split)))
        if not os.path.isdir(base_dir):
            check.fail('root folder {} of split {} does not exist'.format(
                base_dir, split))
    img_paths, label_paths, seen = [], [], {}
    with open(list_path) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            where = '{} line {}'.format(list_path, number)
            # A test split may list images only (no labels).
            if len(fields) != 2 and not (split == 'test'
                                         and len(fields) == 1):
                check.fail('{} has {} field(s), not "IMAGE LABEL"'.format(
                    where, len(fields)), 'write one image and its label '
                    'per line, separated by a space')
            img, label = (os.path.normpath(os.path.join(base_dir, p))
                          if p is not None else None
                          for p in (fields + [None])[:2])
            if label_paths and (label is None) != (label_paths[0] is None):
                check.fail('{} has {} field(s), but line {} had {}'.format(
                    where, len(fields), min(seen.values()),
                    1 if label_paths[0] is None else 2),
                    'give every image of the split a label, or none')
            if img in seen:
                check.fail('{} lists image {} again (first on line {})'
                           .format(where, fields[0], seen[img]))
            seen[img] = number
            if not os.path.isfile(img):
                check.fail('{}: image {} does not exist'.format(where, img),
                           'correct the list (paths are relative to {})'
                           .format(base_dir))
            if label is not None and not os.path.isfile(label):
                check.fail('{}: image {} has no label {}'.format(
                    where, fields[0], label), 'correct the list (paths are '
                    'relative to {})'.format(base_dir))
            img_paths.append(img)
            label_paths.append(label)
    if not img_paths:
        check.fail('list file {} of split {} lists no images'.format(
            list_path, split))
    return img_paths, label_paths


class _Description(object):
    """The checked content of a description file."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        check = _Checker(path)
        self.check = check
        if not os.path.isfile(path):
            raise UserError('dataset file {} does not exist; pass the path '
                            'of a dataset description .json (see '
                            'docs/own-data.md)'.format(path))
        try:
            with open(path, encoding='utf-8') as f:
                desc = json.load(f, object_pairs_hook=_Object)
        except (ValueError, UnicodeDecodeError) as e:
            check.fail('not valid JSON ({})'.format(e))
        except OSError as e:
            raise UserError('cannot read dataset file {} ({})'.format(
                path, e))
        repeated = _repeated_key(desc)
        if repeated is not None:
            check.fail('key {} is given twice in {} (JSON would keep the '
                       'last one and drop the other without a word)'.format(
                           json.dumps(repeated[0]), repeated[1]),
                       'keep one entry per key')
        check.keys(desc, _TOP_KEYS, 'the file')
        self.label_names = _classes(check, desc)
        n_class = len(self.label_names)
        self.label_colors = _colors(check, desc, n_class)
        self.label_format = desc.get('label_format', 'index')
        if self.label_format not in LABEL_FORMATS:
            check.fail('"label_format" must be one of {}, not {!r}'.format(
                ', '.join('"{}"'.format(f) for f in LABEL_FORMATS),
                self.label_format))
        self.ignore_label = (check.integer(desc, 'ignore_label', 0,
                                           _MAX_STORED)
                             if 'ignore_label' in desc
                             else DEFAULT_IGNORE_LABEL)
        if self.label_format == 'rgb':
            self.color_table, self.ignore_color = _color_table(check, desc)
            self.table = None
            self.label_values = 'the colours of "colors"{}'.format(
                '' if self.ignore_color is None else ' and the ignore_color '
                '{}'.format(self.ignore_color))
        else:
            if 'ignore_color' in desc:
                check.fail('"ignore_color" is for colour-coded label maps',
                           'add "label_format": "rgb", or use '
                           '"ignore_label"')
            self.color_table = self.ignore_color = None
            self.table = _lookup_table(check, desc, n_class,
                                       self.ignore_label)
            self.label_values = _stored_values(desc, n_class,
                                               self.ignore_label)
        self.input_size = (check.integer(desc, 'input_size', MIN_INPUT_SIZE)
                           if 'input_size' in desc else DESCRIPTION_INPUT_SIZE)
        self.iterations = (check.integer(desc, 'iterations', 1)
                           if 'iterations' in desc else DESCRIPTION_ITERATIONS)
        if 'name' in desc:
            check.string(desc, 'name', 'the file')
        self.splits = {}
        for split in SPLITS:
            if split not in desc:
                continue
            spec = desc[split]
            if isinstance(spec, dict) and 'list' in spec:
                check.keys(spec, _LIST_KEYS, 'split ' + split)
            else:
                check.keys(spec, _FOLDER_KEYS, 'split ' + split)
                # A test split may come without labels: predictions only.
                for key in (('images',) if split == 'test'
                            else ('images', 'labels')):
                    if key not in spec:
                        check.fail('split {} has no {!r} folder'.format(
                            split, key), 'give "images" and "labels" '
                            'folders, or a "list" file')
            self.splits[split] = spec
        if not self.splits:
            check.fail('no split', 'add "train" and "val" (and optionally '
                       '"test")')
        self.signature = hashlib.sha1(json.dumps(
            [_CHECK_VERSION, self.path, n_class, self.ignore_label,
             self.label_format, None if self.table is None
             else self.table.tolist(), self.label_colors, self.ignore_color]
        ).encode()).hexdigest()[:16]

    def pairs(self, split, data_dir):
        if split not in self.splits:
            self.check.fail('no {!r} split'.format(split), 'add one, or use '
                            'one of {}'.format(', '.join(sorted(
                                self.splits))))
        root = (os.path.dirname(self.path) if data_dir in (None, 'auto')
                else data_dir)
        spec = self.splits[split]
        if 'list' in spec:
            return _list_pairs(self.check, split, spec, root)
        return _folder_pairs(self.check, split, spec, root)


# What to do about a colour label file of a described dataset.
_COLOUR_FIX = (base.COLOUR_LABEL_FIX + ', or set "label_format": "rgb" in '
               'the dataset file to read colour-coded label maps through '
               'its "colors"')


class DescribedDataset(base.SegmentationDataset):
    """One split of a described dataset.

    Each item is ``(img, label)``:

    * img: (3, H, W) float32 RGB, values in [0, 255].
    * label: (H, W) int32 class ids in [0, n_class - 1], -1 for the
      ignore_label (and values that ``label_map`` maps to it).

    Building it checks the layout (folders, list files, pairing); the
    label values are checked by :meth:`check_labels`.
    """

    def __init__(self, description, split, data_dir='auto'):
        self._desc = description
        self.split = split
        self.img_paths, self.label_paths = description.pairs(split, data_dir)
        # Only a test split can come without labels (predictions only).
        self.has_labels = all(p is not None for p in self.label_paths)
        self.n_class = len(description.label_names)
        self.label_values = description.label_values
        self.fix = 'correct the label map or the dataset file {}'.format(
            description.path)

    @property
    def table(self):
        return self._desc.table

    def convert_label(self, raw):
        table = self.table
        # Negative values (32-bit files) are no stored value either.
        inside = (raw >= 0) & (raw < len(table))
        return np.where(inside, table[np.where(inside, raw, 0)],
                        self.n_class).astype(np.int32)

    def label_mode_problem(self, path, mode):
        """Why a label file of PIL ``mode`` cannot be read as this
        dataset's label maps (one line), or None (for the header checks
        before training)."""
        if self._desc.label_format == 'rgb':
            return base.rgb_label_mode_problem(path, mode)
        return base.label_mode_problem(path, mode, _COLOUR_FIX)

    def get_label(self, i):
        """The ``i``-th label map, (H, W) int32, -1 where ignored."""
        return self._read_label(self.label_paths[i])

    def _read_label(self, path):
        if self._desc.label_format == 'rgb':
            packed = base.read_rgb_label(path)
            label = self._desc.color_table.convert(packed)
            base.check_rgb_label(label, packed, self.n_class, path,
                                 self.label_values, self.fix)
            return label
        raw = base.read_label_image(path, _COLOUR_FIX)
        label = self.convert_label(raw)
        base.check_label(label, raw, self.n_class, path, self.label_values,
                         self.fix)
        return label

    def _check_one(self, i):
        """Pixel counts of the i-th label map after checking it: one per
        class, then the ignored pixels."""
        path = self.label_paths[i]
        label = self._read_label(path)
        header = base.image_header(self.img_paths[i])
        if header is not None:
            base.check_label_size(path, label.shape[::-1], self.img_paths[i],
                                  header.size, self.fix)
        return np.bincount(label.ravel() + 1,
                           minlength=self.n_class + 1)[1:].tolist() + [
                               int(np.count_nonzero(label < 0))]

    def label_counts(self, indices=None, progress=None):
        """Check the label maps of ``indices`` (default: all) and count
        the pixels of each class in each.

        The checks and the cache are those of :meth:`check_labels`.

        Args:
            indices (iterable of int): Items to check.
            progress (callable or None): Called with no argument after
                each item.

        Returns:
            numpy.ndarray: (len(indices), n_class + 1) int64: the pixels
            of each class in each item, then its ignored pixels; all zero
            for a split without labels.

        Raises:
            UserError: The first bad file, naming it and the value.
        """
        indices = list(range(len(self)) if indices is None else indices)
        counts = np.zeros((len(indices), self.n_class + 1), dtype=np.int64)
        if not self.has_labels:
            return counts
        cache_path = _cache_path(self._desc.signature)
        cache = _read_cache(cache_path)
        new = {}
        try:
            for row, i in enumerate(indices):
                key = os.path.abspath(self.label_paths[i])
                stamp = [_stamp(self.label_paths[i]),
                         _stamp(self.img_paths[i])]
                entry = cache.get(key)
                if entry is None or entry[0] != stamp:
                    entry = [stamp, self._check_one(i)]
                    new[key] = entry
                counts[row] = entry[1]
                if progress is not None:
                    progress()
        finally:
            # What was checked stays checked, also when a later file fails.
            if new:
                _write_cache(cache_path, new)
        return counts

    def check_labels(self, indices=None):
        """Check the label maps of ``indices`` (default: all) and count
        their pixels per class.

        Every label value must be a class (through ``label_map``) or the
        ignore_label (colour-coded label maps: a colour of ``colors`` or
        the ignore_color), and every label map must have its image's
        size. The result of each file is cached in Chainer's dataset
        folder (``pfnet/chainercv/label_checks``) under the file's size
        and modification time, so repeated runs read only changed files.

        Args:
            indices (iterable of int): Items to check.

        Returns:
            numpy.ndarray: (2, n_class) int64: row 0 the pixels of each
            class, row 1 the labelled (not ignored) pixels of the images
            in which the class appears (for median-frequency weights).

        Raises:
            UserError: The first bad file, naming it and the value.
        """
        counts = self.label_counts(indices)[:, :self.n_class]
        labelled = counts.sum(axis=1, keepdims=True)
        return np.stack([counts.sum(axis=0),
                         np.where(counts > 0, labelled, 0).sum(axis=0)])


def _stamp(path):
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def _cache_path(signature):
    return os.path.join(cache_directory('label_checks'), signature + '.json')


def _read_cache(path):
    try:
        with open(path) as f:
            cache = json.load(f)
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path, new):
    """Add the entries ``new`` to the cache file (under a lock: the MPI
    processes add their shares at the same time)."""
    try:
        with cache_lock('label_checks'):
            cache = _read_cache(path)
            cache.update(new)
            save_json_atomic(path, cache)
    except OSError:
        pass  # the cache only saves time


_LOADED = {}


def load_description(path):
    """Read and check a dataset description file.

    Args:
        path (str): The ``.json`` file.

    Returns:
        pspnet.datasets.spec.DatasetSpec: Named by the file's absolute
        path; ``reader(split, data_dir)`` returns a
        :class:`DescribedDataset` (``data_dir`` 'auto': paths relative to
        the file's folder, else to ``data_dir``). Loaded once per file
        version.

    Raises:
        UserError: The file is missing, not JSON, has an unknown key, a
        value of the wrong type, ... (one line naming the file).
    """
    abspath = os.path.abspath(path)
    try:
        stamp = _stamp(abspath)
    except OSError:
        stamp = None
    key = (abspath, tuple(stamp) if stamp else None)
    if key not in _LOADED:
        desc = _Description(path)
        _LOADED[key] = DatasetSpec(
            name=abspath, label_names=desc.label_names,
            label_colors=desc.label_colors,
            reader=lambda split, data_dir: DescribedDataset(desc, split,
                                                            data_dir),
            input_size=desc.input_size, iterations=desc.iterations,
            weights={})
    return _LOADED[key]


def is_description_path(name):
    """True for a ``--dataset`` value naming a description file."""
    return isinstance(name, str) and name.lower().endswith('.json')
