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


#: Classes with a smaller share of a label map's labelled pixels are folded
#: into one "+N more" entry of a legend by area (0.1 %).
MIN_LEGEND_SHARE = 0.001
#: Room between the panels of a figure, and above them for their titles,
#: in inches.
PANEL_GAP = 0.04
_TITLE_ROOM = 0.3
_SUPTITLE_ROOM = 0.35
#: Largest panel of a figure, in inches (height, width).
PANEL_SIZE = (4.0, 12.0)
#: Colour of the "+N more" legend entry, RGB in [0, 1].
FOLD_COLOR = (0.85, 0.85, 0.85)


def class_shares(label, n_class):
    """The share of each class among the labelled pixels of a label map.

    Args:
        label (numpy.ndarray): Integer ids in [-1, n_class), any shape; -1
            marks pixels without a class, which are not counted.
        n_class (int): Number of classes.

    Returns:
        numpy.ndarray: (n_class,) float64 shares in [0, 1], summing to 1
        (all 0 when no pixel is labelled).
    """
    label = np.asarray(label).ravel()
    counts = np.bincount(label[label >= 0].astype(np.int64),
                         minlength=n_class)[:n_class]
    total = counts.sum()
    return counts / total if total else np.zeros(n_class)


def format_share(share):
    """A share in [0, 1] as the legend writes it: ``'12.3 %'``, and
    ``'< 0.1 %'`` for a share above 0 below 0.001."""
    if 0 < share < 0.001:
        return '< 0.1 %'
    return '{:.1f} %'.format(100 * share)


def legend_handles(label, label_names, label_colors, by_area=False,
                   min_share=MIN_LEGEND_SHARE):
    """Legend entries for the classes present in a label map.

    Args:
        label (numpy.ndarray): Integer ids in [-1, n_class), any shape.
        label_names (sequence of str): n_class names.
        label_colors (numpy.ndarray or sequence): (n_class, 3) RGB colours.
        by_area (bool): False: one entry per class present, in the order
            of class ids, labelled with its name. True: the classes by
            their share of the labelled pixels, largest first (equal
            shares in the order of class ids), each labelled with its name
            and share (``'road 45.2 %'``, :func:`format_share`); classes
            with a share below ``min_share`` are folded into one last
            entry ``'+N more (S %)'`` (N classes, S their total share), in
            :data:`FOLD_COLOR`.
        min_share (float): The smallest share of its own entry (by area).

    Returns:
        list of matplotlib.patches.Patch: The entries, filled with the
        classes' colours.
    """
    from matplotlib.patches import Patch
    colors = np.asarray(label_colors, dtype=np.float64).reshape(-1, 3) / 255
    shares = class_shares(label, len(label_names))
    present = [int(i) for i in np.flatnonzero(shares)]
    if not by_area:
        return [Patch(facecolor=colors[i], edgecolor='black', linewidth=0.5,
                      label=label_names[i]) for i in present]
    # A stable sort of the negated shares: equal shares keep id order.
    order = [present[k] for k in np.argsort(-shares[present],
                                            kind='stable')]
    shown = [i for i in order if shares[i] >= min_share]
    folded = [i for i in order if shares[i] < min_share]
    handles = [Patch(facecolor=colors[i], edgecolor='black', linewidth=0.5,
                     label='{} {}'.format(label_names[i],
                                          format_share(shares[i])))
               for i in shown]
    if folded:
        handles.append(Patch(
            facecolor=FOLD_COLOR, edgecolor='black', linewidth=0.5,
            label='+{} more ({})'.format(
                len(folded), format_share(shares[folded].sum()))))
    return handles


def panel_size(shape, size=PANEL_SIZE):
    """The size in inches of a panel showing an image of ``shape`` whole,
    at the image's aspect ratio, as large as fits in ``size``.

    Args:
        shape (tuple of ints): The image's (H, W).
        size (tuple of floats): The largest (height, width) in inches.

    Returns:
        tuple of floats: (height, width) in inches.
    """
    H, W = max(shape[0], 1), max(shape[1], 1)
    scale = min(size[0] / H, size[1] / W)
    return H * scale, W * scale


def place_panels(fig, shape, n_row, n_column, right=0.0, bottom=0.0,
                 title=False, size=PANEL_SIZE):
    """Axes for a grid of panels of images of one ``shape``, each of
    exactly the image's aspect ratio and only :data:`PANEL_GAP` apart (so
    that no blank band lies between them), room above each for its title,
    and ``right`` and ``bottom`` inches beside and below the grid for a
    legend. Sets the figure's size.

    Args:
        fig (matplotlib.figure.Figure): The figure.
        shape (tuple of ints): (H, W) of the images.
        n_row, n_column (int): The grid.
        right, bottom (float): Room for a legend, in inches.
        title (bool): Leave room for a title over the figure.
        size (tuple of floats): The largest panel, (height, width) inches.

    Returns:
        list of matplotlib.axes.Axes: The panels, row by row, axes off.
    """
    panel_h, panel_w = panel_size(shape, size)
    row_h = panel_h + _TITLE_ROOM
    width = n_column * panel_w + (n_column - 1) * PANEL_GAP + right
    height = (n_row * row_h + (n_row - 1) * PANEL_GAP + bottom
              + (_SUPTITLE_ROOM if title else 0))
    fig.set_size_inches(width, height)
    axes = []
    for row in range(n_row):
        top = height - (_SUPTITLE_ROOM if title else 0) - row * (
            row_h + PANEL_GAP) - _TITLE_ROOM
        for column in range(n_column):
            left = column * (panel_w + PANEL_GAP)
            ax = fig.add_axes([left / width, (top - panel_h) / height,
                               panel_w / width, panel_h / height])
            ax.set_axis_off()
            axes.append(ax)
    return axes


def legend_columns(n_entries, panel_height):
    """Columns of a legend of ``n_entries`` beside a panel
    ``panel_height`` inches high: as many rows as fit beside it (at least
    10)."""
    rows = max(10, int(panel_height / 0.19))
    return max(1, int(math.ceil(n_entries / rows)))


def segmentation_figure(img, label, label_names, label_colors, fig=None,
                        title=None):
    """A figure with an image beside its coloured segmentation and, beside
    them, a legend of the classes present by area (the largest first,
    with their shares; specks below :data:`MIN_LEGEND_SHARE` folded into
    ``'+N more'``, see :func:`legend_handles`). The two panels have the
    image's aspect ratio and touch but for :data:`PANEL_GAP`; the legend
    starts right of the segmentation.

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
    shape = np.asarray(label).shape
    handles = legend_handles(label, label_names, label_colors, by_area=True)
    n_column = legend_columns(len(handles), panel_size(shape)[0])
    if fig is None:
        from matplotlib.figure import Figure
        fig = Figure()
    # Room for the legend; the tight bounding box of save_figure crops
    # what it does not use.
    image_ax, label_ax = place_panels(
        fig, shape, 1, 2, right=2.6 * n_column if handles else 0,
        title=bool(title))
    image_ax.imshow(np.clip(np.asarray(img).transpose(1, 2, 0), 0, 255)
                    .astype(np.uint8))
    image_ax.set_title('input')
    label_ax.imshow(colorize_label(label, label_colors).transpose(1, 2, 0),
                    interpolation='nearest')
    label_ax.set_title('segmentation')
    if handles:
        label_ax.legend(handles=handles, loc='upper left',
                        bbox_to_anchor=(1, 1), borderaxespad=0.3,
                        ncol=n_column, fontsize='small', frameon=False)
    if title:
        # Centred over the panels, not over the legend's room.
        height = fig.get_size_inches()[1]
        fig.suptitle(title, x=label_ax.get_position().x1 / 2,
                     y=1 - 0.05 / height, va='top')
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
