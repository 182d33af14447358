"""Prediction files in the formats the benchmark servers take.

* ``'cityscapes'``: single-channel 8-bit PNGs of Cityscapes *label ids*
  (not train ids), at the image's size, named
  ``{city}/{city}_{seq}_{frame}_pred_labelIds.png`` (cityscapesScripts
  finds the prediction of a ground truth file by its
  ``{city}_{seq}_{frame}`` prefix, in any subfolder).
* ``'ade20k'``: single-channel 8-bit PNGs named after the image, values
  1 to 150 for the classes (0 is reserved for "other", as the SceneParsing
  devkit reads them).
* ``'voc'``: palette PNGs named after the image id, indices the class ids
  0 to 20, with the VOC palette.
* ``None`` (datasets of no benchmark): single-channel PNGs of class ids
  (8-bit up to 256 classes, 16-bit above), named after the image's path
  below the images' common folder.

Every file is written atomically (:mod:`pspnet.atomic`). Colour images
(each class in its colour, RGB PNGs of the same names) may be written
into another folder.
"""

import io
import os

import cv2
import numpy as np
from PIL import Image

from pspnet.atomic import check_target
from pspnet.atomic import make_folders
from pspnet.atomic import remove_created
from pspnet.atomic import write_atomic
from pspnet.atomic import write_error
from pspnet.datasets.cityscapes_labels import cityscapes_labels
from pspnet.datasets.voc_labels import voc_palette
from pspnet.errors import UserError

FORMATS = ('cityscapes', 'ade20k', 'voc', None)

_CITYSCAPES_IDS = np.array(
    [label.id for label in sorted(cityscapes_labels,
                                  key=lambda label: label.train_id)
     if not label.ignore_in_eval], dtype=np.uint8)


def to_file_values(pred_label, benchmark, n_class):
    """The values a prediction file of ``benchmark`` holds.

    Args:
        pred_label (numpy.ndarray): (H, W) int class ids in
            [0, n_class - 1].
        benchmark (str or None): One of :data:`FORMATS`.
        n_class (int): Number of classes.

    Returns:
        numpy.ndarray: (H, W) uint8 (uint16 for more than 256 classes of
        no benchmark): label ids (Cityscapes), class id + 1 (ADE20K),
        class ids (VOC and the others).
    """
    pred_label = np.asarray(pred_label)
    if benchmark == 'cityscapes':
        return _CITYSCAPES_IDS[pred_label]
    if benchmark == 'ade20k':
        return (pred_label + 1).astype(np.uint8)
    return pred_label.astype(np.uint8 if n_class <= 256 else np.uint16)


def from_file_values(values, benchmark):
    """Class ids of the values of a prediction file (the inverse of
    :func:`to_file_values`).

    Returns:
        numpy.ndarray: (H, W) int32 class ids (-1 where a Cityscapes label
        id is no evaluated class).
    """
    values = np.asarray(values).astype(np.int32)
    if benchmark == 'cityscapes':
        lut = np.full(256, -1, dtype=np.int32)
        lut[_CITYSCAPES_IDS] = np.arange(len(_CITYSCAPES_IDS))
        return lut[values]
    if benchmark == 'ade20k':
        return values - 1
    return values


def relative_names(img_paths, benchmark):
    """The file name of each image's prediction, relative to the output
    folder.

    Args:
        img_paths (sequence of str): The dataset's image files.
        benchmark (str or None): One of :data:`FORMATS`.

    Returns:
        list of str: One relative path per image, ending in ``.png``.

    Raises:
        UserError: Two images would get the same name.
    """
    if not img_paths:
        return []
    folders = [os.path.dirname(os.path.abspath(p)) for p in img_paths]
    common = os.path.commonpath(folders)
    names = []
    for path in img_paths:
        relative = os.path.relpath(os.path.abspath(path), common)
        if benchmark == 'cityscapes':
            suffix = '_leftImg8bit.png'
            stem = relative[:-len(suffix)] if relative.endswith(suffix) \
                else os.path.splitext(relative)[0]
            names.append(stem + '_pred_labelIds.png')
        elif benchmark in ('ade20k', 'voc'):
            names.append(os.path.splitext(os.path.basename(path))[0] + '.png')
        else:
            names.append(os.path.splitext(relative)[0] + '.png')
    seen = {}
    for path, name in zip(img_paths, names):
        if name in seen:
            raise UserError('images {} and {} would both be saved as {}; '
                            'give the images distinct names'.format(
                                seen[name], path, name))
        seen[name] = path
    return names


def check_output_dir(path, option, will_exist=()):
    """Check, before the evaluation starts, that the output folder exists
    and files may be written into it, or that it can be created; nothing
    is created (:func:`make_output_dirs` does, once every check passed).

    Args:
        path (str): The folder.
        option (str): Its option, for the messages.
        will_exist (sequence of str): Folders checked before, which
            :func:`make_output_dirs` creates first (a parent of ``path``
            may be one).

    Raises:
        UserError: The folder is a file, its parent does not exist, or it
        may not be written to or created.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError('{} {} is a file; give a folder'.format(option, path))
    if os.path.isdir(path):
        check_target(os.path.join(path, 'x.png'), 'prediction file')
        return
    parent = os.path.dirname(os.path.abspath(path))
    if parent in (os.path.abspath(folder) for folder in will_exist):
        return
    if not os.path.isdir(parent):
        raise UserError('the folder {} of {} {} does not exist; create '
                        'it or write elsewhere'.format(parent, option, path))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError('cannot create {} {} (permission denied); choose a '
                        'folder you may write to'.format(option, path))


def make_output_dirs(folders):
    """Create the output folders that do not exist.

    Args:
        folders (sequence of (str, str)): (option, folder) pairs, checked
            by :func:`check_output_dir`.

    Returns:
        list of str: The folders created (for
        :func:`pspnet.atomic.remove_created`).

    Raises:
        UserError: One cannot be created (what was created is removed).
    """
    created = []
    for option, folder in folders:
        try:
            created += make_folders(folder)
        except OSError as e:
            remove_created(folders=created)
            raise UserError('cannot create {} {} ({}); choose a folder you '
                            'may write to'.format(option, folder,
                                                  e.strerror or e))
    return created


def _encode(values, palette=None):
    if palette is None:
        ok, data = cv2.imencode('.png', values)
        if not ok:
            raise UserError('cannot encode a prediction of shape {} as PNG'
                            .format(values.shape))
        return data.tobytes()
    h, w = values.shape
    img = Image.frombytes('P', (w, h), values.astype(np.uint8).tobytes())
    img.putpalette([c for color in palette for c in color])
    buffer = io.BytesIO()
    img.save(buffer, format='PNG')
    return buffer.getvalue()


def _write(path, data):
    """Write ``data`` to ``path`` atomically; returns the folders it
    created."""
    try:
        created = make_folders(os.path.dirname(path))
        write_atomic(path, lambda f: f.write(data))
    except OSError as e:
        raise write_error(path, e)
    return created


class PredictionWriter(object):
    """Writes each image's prediction (and, if asked, its colour image).

    Args:
        folder (str): Output folder of the prediction files.
        img_paths (sequence of str): The dataset's image files (for the
            names, :func:`relative_names`).
        benchmark (str or None): One of :data:`FORMATS`.
        n_class (int): Number of classes.
        label_colors (sequence): (R, G, B) per class, for colour images.
        color_folder (str or None): Folder of the colour images, or None.
    """

    def __init__(self, folder, img_paths, benchmark, n_class, label_colors,
                 color_folder=None):
        if benchmark not in FORMATS:
            raise ValueError('unknown prediction format {!r}'.format(
                benchmark))
        self.folder = folder
        self.names = relative_names(img_paths, benchmark)
        self.benchmark = benchmark
        self.n_class = n_class
        self.color_folder = color_folder
        #: Files this writer created (not those it replaced) and folders
        #: it created.
        self.written, self.created = [], []
        self._colors = np.zeros((max(n_class, 1), 3), dtype=np.uint8)
        if len(label_colors):
            self._colors[:len(label_colors)] = np.asarray(label_colors,
                                                          dtype=np.uint8)

    def path(self, i):
        """The prediction file of image ``i``."""
        return os.path.join(self.folder, self.names[i])

    def write(self, i, pred_label):
        """Write image ``i``'s prediction, (H, W) int class ids."""
        values = to_file_values(pred_label, self.benchmark, self.n_class)
        palette = voc_palette if self.benchmark == 'voc' else None
        paths = [(self.path(i), _encode(values, palette))]
        if self.color_folder is not None:
            rgb = self._colors[np.asarray(pred_label)]
            paths.append((os.path.join(self.color_folder, self.names[i]),
                          _encode(np.ascontiguousarray(rgb[:, :, ::-1]))))
        for path, data in paths:
            new = not os.path.lexists(path)
            self.created += _write(path, data)
            if new:
                self.written.append(path)

    def remove_written(self):
        """Remove the files this writer created (files it replaced stay,
        with their new content) and the folders it created (those left
        empty): what a failed run leaves of no use."""
        remove_created(self.written, self.created)
        self.written, self.created = [], []

    def packing_hint(self, n_images=None):
        """Lines saying where the files are and how to send them.

        Args:
            n_images (int or None): Predictions written (the first
                ``n_images`` images, ``--limit``); by default all.
        """
        folder = os.path.abspath(self.folder)
        if n_images is None:
            n_images = len(self.names)
        lines = ['predictions of {} images in {}'.format(n_images, folder)]
        archive = folder.rstrip(os.sep)
        if self.benchmark == 'cityscapes':
            lines.append('label ids as the Cityscapes server takes them; '
                         'pack them with: cd {} && zip -qr {}.zip .'.format(
                             folder, archive))
        elif self.benchmark == 'ade20k':
            lines.append('values 1 to 150 as the SceneParsing server takes '
                         'them; pack them with: cd {} && zip -q {}.zip '
                         '*.png'.format(folder, archive))
        elif self.benchmark == 'voc':
            lines.append(
                'palette PNGs as the VOC server takes them; pack them with: '
                "cd {} && tar -czf {}.tgz --transform 's,^,results/VOC2012/"
                "Segmentation/comp6_test_cls/,' *.png (comp5 if trained on "
                'VOC data only)'.format(folder, archive))
        else:
            lines.append('class ids 0 to {} as {}-bit PNGs'.format(
                self.n_class - 1, 8 if self.n_class <= 256 else 16))
        if self.color_folder is not None:
            lines.append('colour images in {}'.format(
                os.path.abspath(self.color_folder)))
        return lines
