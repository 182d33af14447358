"""CVAT's "Segmentation mask 1.1" export (PASCAL VOC's layout) as label
maps of class ids.

The export folder holds::

    labelmap.txt                       # name:R,G,B:parts:actions a line
    ImageSets/Segmentation/SUBSET.txt  # the image names of each subset
    SegmentationClass/NAME.png         # colour-coded label maps
    JPEGImages/NAME.jpg                # the images (when exported with them)

The classes are the lines of ``labelmap.txt`` in their order (CVAT's
first is ``background:0,0,0::``) with their colours; every pixel of a
label map must have one of them. Subsets ``train``, ``val`` (or
``valid``, ``validation``) and ``test`` are those splits, ``default``
(CVAT's subset of images that have none) is ``train``.
"""

import glob
import os

from pspnet.annotations import export
from pspnet.datasets import base
from pspnet.datasets.description import DEFAULT_IMAGE_EXTENSIONS
from pspnet.errors import UserError

#: The split of each CVAT subset name.
SUBSETS = {'train': 'train', 'default': 'train', 'val': 'val',
           'valid': 'val', 'validation': 'val', 'test': 'test'}


def read_labelmap(path):
    """(names, colours) of a ``labelmap.txt``.

    Raises:
        UserError: Missing, a line without a colour, a name or a colour
        given twice.
    """
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise UserError('{} does not exist; pass the folder of a CVAT '
                        '"Segmentation mask 1.1" export'.format(path))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError('cannot read {} ({})'.format(path, e))
    names, colors = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        fields = line.split(':')
        name = fields[0].strip()
        try:
            rgb = tuple(int(c) for c in fields[1].split(','))
        except (IndexError, ValueError):
            rgb = ()
        if not name or len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise UserError('{} line {}: {!r} is not "name:R,G,B:..."; give '
                            'every label its colour'.format(path, number,
                                                            line))
        if name in names:
            raise UserError('{} line {}: label {!r} is listed twice; keep '
                            'one'.format(path, number, name))
        if rgb in colors:
            raise UserError('{} line {}: labels {!r} and {!r} have the same '
                            'colour {}; give each label its own colour'
                            .format(path, number, names[colors.index(rgb)],
                                    name, list(rgb)))
        names.append(name)
        colors.append(rgb)
    if not names:
        raise UserError('{} lists no labels; export the task with its '
                        'labels'.format(path))
    return names, colors


def _find_image(folders, name):
    """The image file of ``name`` in the first folder that has one, or
    None; refuses two images of the name in one folder."""
    for folder in folders:
        if folder is None:
            continue
        stem = os.path.join(folder, *name.split('/'))
        found = sorted(
            path for path in glob.glob(glob.escape(stem) + '.*')
            if os.path.splitext(path)[0] == stem and os.path.isfile(path)
            and os.path.splitext(path)[1].lower()
            in DEFAULT_IMAGE_EXTENSIONS)
        if len(found) > 1:
            raise UserError('{} and {} are two images of {}; keep one'
                            .format(found[0], found[1], name))
        if found:
            return found[0]
    return None


def _renderer(label_path, table, n_class, labelmap):
    def render():
        packed = base.read_rgb_label(label_path)
        label = table.convert(packed)
        base.check_rgb_label(label, packed, n_class, label_path,
                             'the colours of {}'.format(labelmap),
                             'add the colour to labelmap.txt, or repaint '
                             'those pixels in CVAT')
        return label
    return render


def read_cvat(folder, images_dir=None):
    """Read and check a CVAT "Segmentation mask 1.1" export.

    Args:
        folder (str): The export's folder (``labelmap.txt``, ...).
        images_dir (str or None): Where the images are when the export
            has none (``NAME.jpg``, ``NAME.png``, ... as in the subsets);
            the export's ``JPEGImages`` is searched first.

    Returns:
        pspnet.annotations.export.Export: The classes of ``labelmap.txt``
        and the items; their label maps are checked when drawn (a colour
        of no label is refused, with the file, the colour and its pixel
        count).

    Raises:
        UserError: The first problem, in one line: no labelmap.txt or
        subsets, a subset of another name, an image or label map missing
        or of another size.
    """
    if not os.path.isdir(folder):
        raise UserError('CVAT export folder {} does not exist; unpack the '
                        'export and pass its folder'.format(folder))
    labelmap = os.path.join(folder, 'labelmap.txt')
    names, colors = read_labelmap(labelmap)
    table = base.ColorTable(colors)
    sets = os.path.join(folder, 'ImageSets', 'Segmentation')
    subsets = sorted(n for n in (os.listdir(sets) if os.path.isdir(sets)
                                 else ()) if n.endswith('.txt'))
    if not subsets:
        raise UserError('no ImageSets/Segmentation/*.txt in {}; pass the '
                        'folder of a CVAT "Segmentation mask 1.1" export'
                        .format(folder))
    image_folders = (os.path.join(folder, 'JPEGImages'), images_dir)
    splits = {}
    for subset_file in subsets:
        subset = subset_file[:-len('.txt')]
        split = SUBSETS.get(subset.lower())
        list_path = os.path.join(sets, subset_file)
        if split is None:
            raise UserError('{}: subset {!r} is none of {}; rename it to '
                            'train, val or test in CVAT'.format(
                                list_path, subset, ', '.join(SUBSETS)))
        with open(list_path, encoding='utf-8') as f:
            lines = [line.strip() for line in f if line.strip()]
        items = splits.setdefault(split, [])
        for line in lines:
            where = '{} ({})'.format(list_path, line)
            name = export.relative_name(line, where, 'image name')
            label_path = os.path.join(folder, 'SegmentationClass',
                                      *name.split('/')) + '.png'
            if not os.path.isfile(label_path):
                raise UserError('{}: label map {} does not exist; export '
                                'again'.format(where, label_path))
            image_path = _find_image(image_folders, name)
            if image_path is None:
                raise UserError(
                    '{}: no image {}.* in {}{}; export with images, or pass '
                    '--images with the folder of the task\'s images'.format(
                        where, name, image_folders[0], '' if images_dir is
                        None else ' nor in {}'.format(images_dir)))
            header = export.image_file(image_path, where, 'export again')
            label_header = base.image_header(label_path)
            if label_header is None:
                raise UserError('{}: cannot read label map {}; export again'
                                .format(where, label_path))
            problem = base.rgb_label_mode_problem(label_path,
                                                  label_header.mode)
            if problem is not None:
                raise UserError(problem)
            base.check_label_size(label_path, label_header.size, image_path,
                                  header.size, 'export again')
            items.append(export.Item(
                name=name, ext=os.path.splitext(image_path)[1],
                size=header.size, source=where, image_path=image_path,
                render=_renderer(label_path, table, len(names), labelmap)))
    for items in splits.values():
        items.sort(key=lambda item: item.name)
        if not items:
            raise UserError('a subset of {} lists no images; export the '
                            'task again'.format(sets))
    result = export.Export(kind='CVAT', classes=tuple(names),
                           colors=tuple(colors), splits=splits)
    export.check_items(result)
    return result
