"""Datasets from annotation tools, and a look at a dataset before
training (prepare_dataset.py).

:func:`prepare` reads a COCO, labelme or CVAT export
(:mod:`pspnet.annotations`), checks all of it, and writes a described
dataset folder (images, label PNGs of class ids, ``dataset.json``) that
``--dataset OUT/dataset.json`` takes everywhere. :func:`preview` checks
every label map of a split as training does and writes a contact sheet
of the images with their labels, and the classes' pixel frequencies.
"""

import csv
import dataclasses
import io
import math
import os
import sys
import warnings

import cv2
import numpy as np

from pspnet import atomic
from pspnet import progress
from pspnet import visualizations
from pspnet.annotations import coco
from pspnet.annotations import cvat
from pspnet.annotations import labelme
from pspnet.annotations import output
from pspnet.datasets import registry
from pspnet.errors import UserError
from pspnet.training import loader

#: The formats :func:`prepare` converts.
FORMATS = ('coco', 'labelme', 'cvat')


@dataclasses.dataclass
class PrepareOptions:
    """The options of ``prepare_dataset.py coco|labelme|cvat``.

    Attributes:
        format (str): One of :data:`FORMATS`.
        out (str): The dataset folder to write.
        train, val, test (str or None): The splits' exports: COCO JSON
            files, or labelme folders.
        export_dir (str or None): The CVAT export's folder.
        images (str or None): COCO: the folder ``file_name`` is relative
            to (default: each JSON file's folder); CVAT: the images of an
            export without them.
        classes (str or None): labelme: the classes file.
        crowd (str): COCO: crowd regions ``'ignore'`` d or drawn as their
            ``'class'``.
        val_fraction (float or None): Move this fraction of the training
            images into a validation split (an export without one).
        seed (int): The random draw of ``val_fraction``.
        force (bool): Replace an existing ``out`` that holds files.
        copy (bool): Copy the images (default: hard links where the file
            system allows).
        show_progress (bool): Progress bar on stderr.
    """

    format: str
    out: str
    train: str = None
    val: str = None
    test: str = None
    export_dir: str = None
    images: str = None
    classes: str = None
    crowd: str = 'ignore'
    val_fraction: float = None
    seed: int = 0
    force: bool = False
    copy: bool = False
    show_progress: bool = True

    @classmethod
    def from_namespace(cls, args):
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{k: v for k, v in vars(args).items() if k in names})


def _splits(options):
    return {split: path for split, path in (
        ('train', options.train), ('val', options.val),
        ('test', options.test)) if path is not None}


def _read(options):
    """The checked export of ``options``."""
    if options.format == 'coco':
        images = options.images
        if images is not None and not os.path.isdir(images):
            raise UserError('--images {} is not a folder; pass the folder '
                            'the file names of the export are relative to'
                            .format(images))
        files = _splits(options)
        return coco.read_coco(files, {s: images for s in files},
                              options.crowd)
    if options.format == 'labelme':
        classes = (labelme.read_classes_file(options.classes)
                   if options.classes else None)
        return labelme.read_labelme(_splits(options), classes)
    if options.images is not None and not os.path.isdir(options.images):
        raise UserError('--images {} is not a folder; pass the folder of '
                        'the task\'s images'.format(options.images))
    return cvat.read_cvat(options.export_dir, options.images)


def prepare(options, out=None):
    """Convert an export into a described dataset folder.

    Everything is checked before anything is written, and the folder
    appears whole or not at all (:mod:`pspnet.annotations.output`).

    Args:
        options (PrepareOptions): What to convert and where.
        out: Text stream of the summary (default stdout).

    Returns:
        str: The path of the written ``dataset.json``.

    Raises:
        UserError: The first problem, in one line; nothing written.
    """
    out = sys.stdout if out is None else out
    inputs = [options.train, options.val, options.test, options.export_dir,
              options.images, options.classes]
    if options.format == 'coco' and options.images is None:
        inputs += [os.path.dirname(os.path.abspath(p))
                   for p in _splits(options).values()]
    searched = ([options.train, options.val, options.test]
                if options.format == 'labelme' else [])
    output.check_output(options.out, options.force, inputs, searched)
    export = _read(options)
    if options.val_fraction is not None:
        export = output.split_validation(export, options.val_fraction,
                                         options.seed)
    path = output.write_dataset(export, options.out,
                                link=not options.copy,
                                show_progress=options.show_progress)
    print('{} export: {} classes ({})'.format(
        export.kind, len(export.classes), ', '.join(export.classes)),
        file=out)
    for split, items in export.splits.items():
        print('{}: {} images'.format(split, len(items)), file=out)
    for note in export.notes:
        print(note, file=out)
    print('wrote {}'.format(path), file=out)
    if 'val' not in export.splits:
        print('no val split: training needs one; run again with '
              '--val-fraction 0.1 (for example)', file=out)
    return path


# -- preview ------------------------------------------------------------

#: Tiles of a contact sheet page (columns, rows), and a tile's size.
SHEET_GRID = (6, 4)
TILE_SIZE = (320, 240)
#: The files preview writes (contact_sheet_N.png for several pages).
PREVIEW_FILES = ('contact_sheet.png', 'class_frequencies.png',
                 'class_frequencies.csv')


@dataclasses.dataclass
class PreviewOptions:
    """The options of ``prepare_dataset.py preview``.

    Attributes:
        dataset (str): A dataset name or description ``PATH.json``.
        out (str): The folder of the pictures and the table.
        split (str): The split to look at.
        sheet_images (int): Images on the contact sheets, evenly spread
            over the split; 0 for all.
        data_dir (str): The dataset's folder (``'auto'``: the default).
        show_progress (bool): Progress bar on stderr.
    """

    dataset: str
    out: str
    split: str = 'train'
    sheet_images: int = 48
    data_dir: str = 'auto'
    show_progress: bool = True

    @classmethod
    def from_namespace(cls, args):
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{k: v for k, v in vars(args).items() if k in names})


def _is_preview_file(name):
    return name in PREVIEW_FILES or (
        name.startswith('contact_sheet_') and name.endswith('.png'))


def _check_preview_folder(folder):
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError('--out {} is a file; pass a folder'.format(folder))
    if os.path.isdir(folder):
        others = sorted(n for n in os.listdir(folder)
                        if not _is_preview_file(n))
        if others:
            raise UserError('--out {} holds other files ({}); pass a new '
                            'folder (an earlier preview\'s is replaced)'
                            .format(folder, others[0]))
    atomic.check_output_folder(folder, '--out')


def _thumbnail(img, label):
    """An image and its label map scaled into :data:`TILE_SIZE`: (3, h,
    w) float32 and (h, w) int32."""
    height, width = label.shape
    scale = min(TILE_SIZE[0] / width, TILE_SIZE[1] / height, 1.0)
    size = (max(1, int(round(width * scale))),
            max(1, int(round(height * scale))))
    if size == (width, height):
        return img, label
    small = cv2.resize(np.ascontiguousarray(img.transpose(1, 2, 0)), size,
                       interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    small_label = cv2.resize(label.astype(np.int32), size,
                             interpolation=cv2.INTER_NEAREST)
    return small, small_label


def _count(dataset, indices):
    """(len(indices), n_class + 1) pixels of each class, then ignored."""
    if hasattr(dataset, 'label_counts'):
        return dataset.label_counts(indices)
    rows = []
    for i in indices:
        label = dataset.get_example(i)[1]
        rows.append(np.bincount(label.ravel() + 1,
                                minlength=dataset.n_class + 1)[
            list(range(1, dataset.n_class + 1)) + [0]])
    return np.asarray(rows, dtype=np.int64).reshape(len(indices), -1)


def _sheet(tiles, names, colors, title):
    from matplotlib.figure import Figure
    columns = min(SHEET_GRID[0], len(tiles))
    rows = int(math.ceil(len(tiles) / columns))
    fig = Figure(figsize=(columns * 2.6, rows * 2.2 + 0.6))
    for k, (overlay, label, caption) in enumerate(tiles):
        ax = fig.add_subplot(rows, columns, k + 1)
        ax.imshow(overlay.transpose(1, 2, 0))
        ax.set_title(caption if len(caption) <= 32
                     else '...' + caption[-29:], fontsize=7)
        ax.set_axis_off()
    handles = visualizations.legend_handles(
        np.concatenate([label.ravel() for _, label, _ in tiles]), names,
        colors)
    if handles:
        # Below the tiles: the saved picture's tight box takes it in.
        fig.legend(handles=handles, loc='upper center',
                   bbox_to_anchor=(0.5, 0.0), fontsize='small',
                   ncol=min(len(handles), 6), frameon=False)
    fig.suptitle(title)
    fig.subplots_adjust(hspace=0.25)
    return fig


def _frequency_chart(names, colors, pixels, total, split):
    from matplotlib.figure import Figure
    n = len(names)
    fig = Figure(figsize=(7, 1.2 + 0.25 * n))
    ax = fig.add_subplot(1, 1, 1)
    share = 100.0 * pixels / max(total, 1)
    rgb = np.asarray(colors, dtype=np.float64).reshape(-1, 3) / 255
    ax.barh(np.arange(n), share, color=rgb, edgecolor='black',
            linewidth=0.5)
    ax.set_yticks(np.arange(n))
    ax.set_yticklabels(['{} (absent)'.format(name) if pixels[i] == 0
                        else name for i, name in enumerate(names)],
                       fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel('% of the pixels of split {}'.format(split))
    fig.tight_layout()
    return fig


def _table(names, counts, total):
    """Rows of the frequency table: class id, name, pixels, percent of the
    split's pixels, images; the ignored pixels last (id -1)."""
    pixels = counts[:, :-1].sum(axis=0)
    images = (counts[:, :-1] > 0).sum(axis=0)
    rows = [[i, name, int(pixels[i]), 100.0 * pixels[i] / max(total, 1),
             int(images[i])] for i, name in enumerate(names)]
    ignored = counts[:, -1]
    rows.append([-1, '(ignored)', int(ignored.sum()),
                 100.0 * ignored.sum() / max(total, 1),
                 int((ignored > 0).sum())])
    return rows


def preview(options, out=None):
    """Check every label map of a split and write what it holds.

    Writes into ``options.out``: ``contact_sheet.png`` (or
    ``contact_sheet_1.png``, ... for more than one page of
    :data:`SHEET_GRID` tiles): images with their labels' colours over
    them, the legend of the classes present; ``class_frequencies.png``
    and ``class_frequencies.csv``: each class's pixels (and the ignored
    ones) and the images it appears in. The same table is printed, and
    the classes absent from the split named. The folder is replaced
    whole (it may hold only an earlier preview).

    Args:
        options (PreviewOptions): The dataset, the split, the folder.
        out: Text stream of the table (default stdout).

    Raises:
        UserError: The first label map that training would refuse (a
        value or colour of no class, another size, a colour file), in
        one line; nothing written.
    """
    out = sys.stdout if out is None else out
    _check_preview_folder(options.out)
    spec = registry.lookup(options.dataset)
    dataset = spec.get(options.split, options.data_dir)
    if not dataset.has_labels:
        raise UserError('split {} of {} has no labels; preview a split with '
                        'labels'.format(options.split, spec.name))
    names = tuple(spec.label_names)
    colors = np.asarray(spec.label_colors, dtype=np.uint8).reshape(-1, 3)
    n = len(dataset)
    k = n if options.sheet_images == 0 else min(options.sheet_images, n)
    sampled = np.unique(np.linspace(0, n - 1, k).round().astype(int))
    per_page = SHEET_GRID[0] * SHEET_GRID[1]
    n_pages = int(math.ceil(len(sampled) / per_page))
    sampled = set(sampled.tolist())
    title = spec.name if not spec.name.endswith('.json') else \
        os.path.basename(os.path.dirname(spec.name))
    counts = np.zeros((n, dataset.n_class + 1), dtype=np.int64)
    created = atomic.make_folders(os.path.dirname(os.path.abspath(
        options.out)))
    bar = progress.bar(total=n, unit='image', desc='checking',
                       disable=not options.show_progress)
    try:
        # Filled beside the folder and renamed over it at the end: a
        # refused label leaves nothing. Pages are drawn as they fill.
        with atomic.replaced_folder(options.out) as tmp, \
                warnings.catch_warnings():
            # Names in scripts the default font lacks are drawn as boxes.
            warnings.filterwarnings('ignore', 'Glyph .* missing from')
            tiles, page = [], 0

            def draw_page():
                first = page * per_page + 1
                visualizations.save_figure(_sheet(
                    tiles, names, colors, '{}, {}: images {} to {} of {}'
                    .format(title, options.split, first,
                            first + len(tiles) - 1, len(sampled))),
                    os.path.join(tmp, 'contact_sheet.png' if n_pages == 1
                                 else 'contact_sheet_{}.png'.format(
                                     page + 1)), dpi=100)

            chunk = 16
            for start in range(0, n, chunk):
                indices = list(range(start, min(start + chunk, n)))
                loader.check_label_files(dataset, indices)
                counts[indices] = _count(dataset, indices)
                for i in indices:
                    if i not in sampled:
                        continue
                    img, label = _thumbnail(*dataset.get_example(i))
                    caption = os.path.basename(dataset.img_paths[i]) \
                        if hasattr(dataset, 'img_paths') else str(i)
                    tiles.append((visualizations.overlay_label(
                        img, label, colors), label, caption))
                    if len(tiles) == per_page:
                        draw_page()
                        tiles, page = [], page + 1
                bar.update(len(indices))
            if tiles:
                draw_page()
            bar.close()
            total = int(counts.sum())
            rows = _table(names, counts, total)
            visualizations.save_figure(_frequency_chart(
                names, colors, counts[:, :-1].sum(axis=0), total,
                options.split), os.path.join(tmp, 'class_frequencies.png'),
                dpi=100)
            text = io.StringIO()
            writer = csv.writer(text, lineterminator='\n')
            writer.writerow(['class', 'name', 'pixels', 'percent', 'images'])
            writer.writerows([r[:3] + ['{:.4f}'.format(r[3])] + r[4:]
                              for r in rows])
            atomic.write_atomic(os.path.join(tmp, 'class_frequencies.csv'),
                                lambda f: f.write(text.getvalue().encode(
                                    'utf-8')))
    except BaseException:
        atomic.remove_created(folders=created)
        raise
    finally:
        bar.close()
    width = max(len(r[1]) for r in rows)
    print('split {} of {}: {} images, {} pixels'.format(
        options.split, spec.name, n, total), file=out)
    print('{:>5}  {:<{w}}  {:>12}  {:>8}  {:>6}'.format(
        'class', 'name', 'pixels', 'percent', 'images', w=width), file=out)
    for r in rows:
        print('{:>5}  {:<{w}}  {:>12}  {:>7.3f}%  {:>6}'.format(
            r[0], r[1], r[2], r[3], r[4], w=width), file=out)
    absent = [name for (i, name, pixels, _, _) in rows[:-1] if pixels == 0]
    if absent:
        print('absent from split {}: {}'.format(options.split,
                                                 ', '.join(absent)), file=out)
    print('wrote {} ({} contact sheet page(s), class_frequencies.png, '
          'class_frequencies.csv)'.format(options.out, n_pages), file=out)
