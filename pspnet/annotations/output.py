"""Writing a checked export as a described dataset folder.

``OUT/dataset.json`` describes the folders ``OUT/images/SPLIT`` (the
images, hard links to the export's files where the file system allows,
else copies; embedded images written out) and ``OUT/labels/SPLIT``
(single-channel PNGs of class ids, 255 ignored; 16-bit with 65535
ignored beyond 255 classes), paired by name, subfolders kept. The folder
is filled beside OUT under a temporary name and renamed into place at the
end: a refusal, a failure or an interruption leaves no OUT (a killed run
leaves its temporary folder, which the next run removes).
"""

import dataclasses
import json
import os
import shutil

import numpy as np

from pspnet import atomic
from pspnet import image_io
from pspnet import progress
from pspnet.annotations.export import Export
from pspnet.datasets import description
from pspnet.errors import UserError

#: The description file written into the dataset folder.
DESCRIPTION = 'dataset.json'


def ignore_label(n_class):
    """The stored value of ignored pixels: 255, or 65535 (16-bit label
    PNGs) beyond 255 classes."""
    return 255 if n_class <= 255 else 65535


def split_validation(export, fraction, seed):
    """The export with a fraction of its training images moved into a
    validation split, drawn at random with ``seed``.

    Raises:
        UserError: The export has a validation split, or the fraction
        leaves no image for one of the two.
    """
    if 'val' in export.splits:
        raise UserError('the export has a val split already; leave out '
                        '--val-fraction')
    if 'train' not in export.splits:
        raise UserError('the export has no train split to draw a val split '
                        'from; leave out --val-fraction')
    train = export.splits['train']
    n_val = int(round(fraction * len(train)))
    if not 0 < n_val < len(train):
        raise UserError('--val-fraction {:g} of the {} training images '
                        'leaves {} for validation and {} for training; '
                        'choose a fraction that leaves at least one for '
                        'each'.format(fraction, len(train), n_val,
                                      len(train) - n_val))
    chosen = set(np.random.RandomState(seed).permutation(len(train))[:n_val]
                 .tolist())
    splits = dict(export.splits)
    splits['train'] = [item for i, item in enumerate(train)
                       if i not in chosen]
    splits['val'] = [item for i, item in enumerate(train) if i in chosen]
    return dataclasses.replace(
        export, splits=splits,
        notes=export.notes + ['val: {} of the {} training images (seed {})'
                              .format(n_val, len(train), seed)])


def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output(out, force, inputs, searched=()):
    """Check, before any work, that the dataset folder ``out`` may be
    written.

    Args:
        out (str): The dataset folder.
        force (bool): Replace an existing folder with files.
        inputs (sequence of str): The export's files and folders, which
            ``out`` must not hold (None entries are left out).
        searched (sequence of str): Input folders searched with their
            subfolders (labelme's), in which ``out`` must not lie.

    Raises:
        UserError: ``out`` is a file, holds files (without ``force``),
        holds an input or lies in a searched folder, or cannot be
        created.
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError('--out {} is a file; pass a folder for the dataset'
                        .format(out))
    for path in inputs:
        if path is not None and _inside(path, out):
            raise UserError('--out {} holds the input {}, which writing the '
                            'dataset would replace; pass a new folder'
                            .format(out, path))
    for path in searched:
        if path is not None and _inside(out, path):
            raise UserError('--out {} lies in the input folder {}, which is '
                            'searched for annotation files; pass a folder '
                            'outside it'.format(out, path))
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise UserError('--out {} exists and holds files; pass --force to '
                        'replace it, or a new folder'.format(out))
    atomic.check_output_folder(out, '--out')


def _place_image(item, target, link):
    if item.image_bytes is not None:
        data = item.image_bytes()
        with open(target, 'wb') as f:
            f.write(data)
        return
    if link:
        try:
            os.link(item.image_path, target)
            return
        except OSError:
            pass  # another file system, or no hard links: copy
    shutil.copyfile(item.image_path, target)


def _description(export, n_items):
    desc = {
        'name': 'converted from a {} export'.format(export.kind),
        'classes': list(export.classes),
        'colors': [list(rgb) for rgb in export.colors],
        'ignore_label': ignore_label(len(export.classes)),
    }
    for split in description.SPLITS:
        if not n_items.get(split):
            continue
        desc[split] = {'images': 'images/' + split}
        if any(item.render is not None for item in export.splits[split]):
            desc[split]['labels'] = 'labels/' + split
    return desc


def write_dataset(export, out, link=True, show_progress=True):
    """Write ``export`` as a described dataset folder ``out``, atomically
    (see the module's docstring), drawing every label map.

    Args:
        export (pspnet.annotations.export.Export): A checked export.
        out (str): The dataset folder (checked by :func:`check_output`).
        link (bool): Hard-link the images where possible (else copy).
        show_progress (bool): A progress bar on stderr.

    Returns:
        str: The path of ``out/dataset.json``.

    Raises:
        UserError: A label map cannot be drawn (a CVAT colour of no
        label...), or the folder cannot be written; nothing is left then.
    """
    assert isinstance(export, Export)
    n_class = len(export.classes)
    # write_label_png writes 8 bits up to 256 ids: 255 must stay free.
    png_ids = n_class if n_class <= 255 else max(n_class, 257)
    n_items = {split: len(items) for split, items in export.splits.items()}
    created = atomic.make_folders(os.path.dirname(os.path.abspath(out)))
    bar = progress.bar(total=sum(n_items.values()), unit='image',
                       desc='writing', disable=not show_progress)
    try:
        with atomic.replaced_folder(out) as tmp:
            for split in description.SPLITS:
                for item in export.splits.get(split, ()):
                    parts = item.name.split('/')
                    image = os.path.join(tmp, 'images', split,
                                         *parts) + item.ext
                    os.makedirs(os.path.dirname(image), exist_ok=True)
                    _place_image(item, image, link)
                    if item.render is not None:
                        label = item.render()
                        if label.shape != (item.size[1], item.size[0]):
                            raise UserError('{}: the label map is {}x{}, not '
                                            'its image\'s {}x{}'.format(
                                                item.source, label.shape[1],
                                                label.shape[0], *item.size))
                        image_io.write_label_png(os.path.join(
                            tmp, 'labels', split, *parts) + '.png',
                            np.where(label < 0, -1, label), png_ids)
                    bar.update()
            path = os.path.join(tmp, DESCRIPTION)
            text = json.dumps(_description(export, n_items), indent=2,
                              ensure_ascii=False) + '\n'
            atomic.write_atomic(path, lambda f: f.write(text.encode('utf-8')))
            # The dataset reads back as written: every image paired.
            spec = description.load_description(path)
            for split, count in n_items.items():
                if count and len(spec.reader(split, 'auto')) != count:
                    raise AssertionError('split {} reads back {} of {} '
                                         'images'.format(split, len(
                                             spec.reader(split, 'auto')),
                                             count))
    except OSError as e:
        atomic.remove_created(folders=created)
        raise UserError('could not write the dataset {} ({}); nothing was '
                        'written; {}'.format(out, e.strerror or e,
                                             'free some space on its disk'
                                             if atomic.is_disk_full(e) else
                                             'choose a folder you may write '
                                             'to'))
    except BaseException:
        atomic.remove_created(folders=created)
        raise
    finally:
        bar.close()
    return os.path.join(out, DESCRIPTION)
