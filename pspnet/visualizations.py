"""Pictures of segmentations: colour masks, overlays and figures with a
legend (matplotlib, drawn off-screen unless a figure from pyplot is given).

Images are (3, H, W) RGB arrays; label maps are (H, W) integer arrays of
class ids in [-1, n_class), -1 marking pixels without a class.
"""

import math
import os

import numpy as np

from pspnet import atomic
from pspnet.datasets import registry
from pspnet.errors import UserError
from pspnet.palette import generate_label_colors
from pspnet.palette import generate_label_names
from pspnet.palette import IGNORE_COLOR

def label_names_and_colors(n_class, dataset=None):
    """Names and colours of the classes of a model.

    Args:
        n_class (int): The model's number of classes.
        dataset (str, pspnet.datasets.spec.DatasetSpec or None): The
            model's dataset, or None to pick the dataset with ``n_class``
            classes.

    Returns:
        tuple: ``(names, colors)``: a tuple of ``n_class`` strings and an
        (n_class, 3) uint8 array of RGB colours. The dataset's names and
        colours when it has ``n_class`` classes, else generated ones
        (``'class 0'``, ... and :func:`generate_label_colors`).
    """
    spec = (registry.lookup(dataset) if dataset is not None
            else registry.dataset_of_n_class(n_class))
    if spec is not None and spec.n_class == n_class:
        return (tuple(spec.label_names),
                np.asarray(spec.label_colors, dtype=np.uint8).reshape(
                    n_class, 3))
    return generate_label_names(n_class), generate_label_colors(n_class)


def colorize_label(label, label_colors, ignore_color=IGNORE_COLOR):
    """Paint every pixel of a label map in the colour of its class.

    Args:
        label (numpy.ndarray): (H, W) integer ids in [-1, n_class).
        label_colors (numpy.ndarray or sequence): (n_class, 3) RGB colours,
            values in [0, 255].
        ignore_color (tuple of ints): RGB colour of pixels labelled -1.

    Returns:
        numpy.ndarray: (3, H, W) uint8 RGB image.
    """
    palette = np.concatenate([
        np.asarray(label_colors, dtype=np.uint8).reshape(-1, 3),
        np.asarray(ignore_color, dtype=np.uint8).reshape(1, 3)])
    label = np.asarray(label)
    if label.size and (label.min() < -1 or label.max() >= len(palette) - 1):
        raise ValueError('label ids must lie in [-1, {}), found [{}, {}]'
                         .format(len(palette) - 1, label.min(), label.max()))
    # -1 indexes the last row: the ignore colour.
    return np.ascontiguousarray(palette[label].transpose(2, 0, 1))


def overlay_label(img, label, label_colors, alpha=0.5):
    """Blend the colours of a label map over an image.

    Args:
        img (numpy.ndarray): (3, H, W) RGB image, values in [0, 255].
        label (numpy.ndarray): (H, W) integer ids in [-1, n_class).
        label_colors (numpy.ndarray or sequence): (n_class, 3) RGB colours.
        alpha (float): Opacity of the colours in [0, 1]; pixels labelled -1
            keep the image.

    Returns:
        numpy.ndarray: (3, H, W) uint8 RGB image.
    """
    if not 0 <= alpha <= 1:
        raise ValueError('alpha must lie in [0, 1], not {}'.format(alpha))
    img = np.asarray(img, dtype=np.float32)
    color = colorize_label(label, label_colors).astype(np.float32)
    weight = np.where(np.asarray(label) >= 0, np.float32(alpha),
                      np.float32(0))[None]
    blended = img * (1 - weight) + color * weight
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def legend_handles(label, label_names, label_colors):
    """Legend entries for the classes present in a label map.

    Args:
        label (numpy.ndarray): (H, W) integer ids in [-1, n_class).
        label_names (sequence of str): n_class names.
        label_colors (numpy.ndarray or sequence): (n_class, 3) RGB colours.

    Returns:
        list of matplotlib.patches.Patch: One patch per class present, in
        the order of class ids, labelled with the class name and filled
        with its colour.
    """
    from matplotlib.patches import Patch
    colors = np.asarray(label_colors, dtype=np.float64).reshape(-1, 3) / 255
    present = [int(i) for i in np.unique(label) if i >= 0]
    return [Patch(facecolor=colors[i], edgecolor='black', linewidth=0.5,
                  label=label_names[i]) for i in present]


def segmentation_figure(img, label, label_names, label_colors, fig=None,
                        title=None):
    """A figure with an image beside its coloured segmentation and a legend
    of the classes present.

    Args:
        img (numpy.ndarray): (3, H, W) RGB image, values in [0, 255].
        label (numpy.ndarray): (H, W) integer ids in [-1, n_class).
        label_names (sequence of str): n_class class names.
        label_colors (numpy.ndarray or sequence): (n_class, 3) RGB colours.
        fig (matplotlib.figure.Figure): Figure to draw on, e.g. one from
            ``pyplot.figure()`` to show it on screen. By default a new
            off-screen figure, which needs no display.
        title (str): Title over the figure.

    Returns:
        tuple: ``(fig, handles)``: the figure and the legend's
        ``matplotlib.patches.Patch`` entries (:func:`legend_handles`).
    """
    H, W = np.asarray(label).shape
    handles = legend_handles(label, label_names, label_colors)
    panel_height = 4.0
    panel_width = min(max(panel_height * W / max(H, 1), 1.5), 12.0)
    rows_per_column = 30
    n_column = max(1, int(math.ceil(len(handles) / rows_per_column)))
    size = (2 * panel_width + 0.5 + 2.2 * n_column, panel_height + 0.6)
    if fig is None:
        from matplotlib.figure import Figure
        fig = Figure(figsize=size)
    else:
        fig.set_size_inches(*size)
    fig.subplots_adjust(wspace=0.05)
    image_ax = fig.add_subplot(1, 2, 1)
    label_ax = fig.add_subplot(1, 2, 2)
    image_ax.imshow(np.clip(np.asarray(img).transpose(1, 2, 0), 0, 255)
                    .astype(np.uint8))
    image_ax.set_title('input')
    label_ax.imshow(colorize_label(label, label_colors).transpose(1, 2, 0),
                    interpolation='nearest')
    label_ax.set_title('segmentation')
    for ax in (image_ax, label_ax):
        ax.set_axis_off()
    if handles:
        label_ax.legend(handles=handles, loc='upper left',
                        bbox_to_anchor=(1.02, 1), borderaxespad=0,
                        ncol=n_column, fontsize='small', frameon=False)
    if title:
        fig.suptitle(title)
    return fig, handles


def save_figure(fig, path, dpi=150):
    """Save a figure, including its legend, to an image file (atomically,
    in the format of its extension).

    Raises:
        UserError: The file cannot be written.
    """
    folder = os.path.dirname(path)
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
        kind = os.path.splitext(path)[1].lstrip('.').lower() or 'png'
        atomic.write_atomic(path, lambda f: fig.savefig(
            f, format=kind, dpi=dpi, bbox_inches='tight'))
    except OSError as e:
        raise UserError('cannot write {}: {}; {}'.format(
            path, e.strerror or e, 'free some space on its disk'
            if atomic.is_disk_full(e) else
            'pass an --output in a writable folder'))
