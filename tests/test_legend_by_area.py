"""The demo figure's legend by area and its layout: classes by their share
of the labelled pixels, specks folded into "+N more", the panels side by
side without a blank band, the legend right beside them."""

import io

import numpy as np
import pytest
from PIL import Image

from pspnet import visualizations as vis


def _label_of_counts(rng, counts, shape, n_ignored=0):
    """A label map of ``shape`` holding ``counts[c]`` pixels of class c
    and ``n_ignored`` pixels of -1, shuffled."""
    values = np.concatenate([np.repeat(np.arange(len(counts)), counts),
                             np.full(n_ignored, -1)])
    assert len(values) == shape[0] * shape[1]
    return rng.permutation(values).reshape(shape).astype(np.int32)


def _random_counts(rng, n_class, n_pixels):
    """Pixel counts of random classes: a few large shares, some specks
    (below 0.1 %), some classes absent, some equal counts."""
    counts = np.zeros(n_class, np.int64)
    present = rng.choice(n_class, rng.randint(2, n_class + 1), replace=False)
    specks = present[:rng.randint(0, len(present) - 1)]
    counts[specks] = rng.randint(1, n_pixels // 1000, len(specks))
    large = [c for c in present if c not in specks]
    counts[large[0]] = n_pixels - counts.sum()
    for c in large[1:]:  # split the rest at random, sometimes equally
        take = (counts[large[0]] // 4 if rng.rand() < 0.3
                else rng.randint(n_pixels // 1000, counts[large[0]] // 2))
        counts[c] = take
        counts[large[0]] -= take
    return counts


@pytest.mark.parametrize('seed', range(6))
def test_legend_by_area_orders_folds_and_shows_shares(seed):
    rng = np.random.RandomState(seed)
    n_class = rng.randint(3, 40)
    shape = (rng.randint(40, 120), rng.randint(40, 120))
    n_ignored = rng.randint(0, 200) if seed % 2 else 0
    n_pixels = shape[0] * shape[1] - n_ignored
    counts = _random_counts(rng, n_class, n_pixels)
    label = _label_of_counts(rng, counts, shape, n_ignored)
    names = ['class {}'.format(c) for c in range(n_class)]
    colors = vis.generate_label_colors(n_class)

    handles = vis.legend_handles(label, names, colors, by_area=True)
    texts = [h.get_label() for h in handles]
    # Expected from the counts alone (not from the code's shares).
    order = sorted((c for c in range(n_class) if counts[c]),
                   key=lambda c: (-counts[c], c))
    shown = [c for c in order if counts[c] * 1000 >= n_pixels]
    folded = [c for c in order if 0 < counts[c] * 1000 < n_pixels]
    expected = ['class {} {:.1f} %'.format(c, 100 * counts[c] / n_pixels)
                for c in shown]
    if folded:
        rest = sum(counts[c] for c in folded) / n_pixels
        expected.append('+{} more ({})'.format(
            len(folded), '< 0.1 %' if rest < 0.001
            else '{:.1f} %'.format(100 * rest)))
    assert texts == expected
    for handle, c in zip(handles, shown):
        np.testing.assert_allclose(handle.get_facecolor()[:3],
                                   colors[c] / 255)
    # Shares of the shown classes are sorted, largest first.
    shares = [float(t.rsplit(' ', 2)[1]) for t in texts[:len(shown)]]
    assert shares == sorted(shares, reverse=True)


def test_fold_threshold_and_ignored_pixels():
    # 12000 labelled pixels: 12 are exactly 0.1 % (shown), 11 are not.
    counts = np.array([12000 - 12 - 11 - 1, 12, 11, 1])
    label = _label_of_counts(np.random.RandomState(0), counts, (101, 120),
                             n_ignored=101 * 120 - 12000)
    names = ('big', 'edge', 'speck', 'dot')
    handles = vis.legend_handles(label, names, vis.generate_label_colors(4),
                                 by_area=True)
    assert [h.get_label() for h in handles] == [
        'big 99.8 %', 'edge 0.1 %', '+2 more (0.1 %)']
    # The class-id legend is unchanged: names of the classes present.
    assert [h.get_label() for h in vis.legend_handles(
        label, names, vis.generate_label_colors(4))] == list(names)
    nothing = np.full((3, 3), -1)
    assert vis.legend_handles(nothing, names, vis.generate_label_colors(4),
                              by_area=True) == []


def _rendered(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=100, bbox_inches='tight')
    return np.asarray(Image.open(buffer).convert('RGB')).astype(int)


@pytest.mark.parametrize('shape', [(40, 40), (20, 90), (90, 20), (2, 3),
                                   (33, 57)])
def test_figure_panels_touch_and_legend_is_beside(shape):
    """The input panel (pure red), the segmentation panel and the legend
    are found in the rendered PNG; the white columns between them are at
    most the panels' gap (and the legend's small padding)."""
    rng = np.random.RandomState(shape[0])
    H, W = shape
    img = np.zeros((3, H, W))
    img[0] = 255
    label = rng.randint(0, 5, (H, W))
    colors = np.array([[0, 0, 255], [0, 200, 0], [0, 200, 200],
                       [100, 0, 100], [50, 50, 50]])
    fig, handles = vis.segmentation_figure(img, label, list('abcde'), colors,
                                           title='a title')
    assert handles
    pixels = _rendered(fig)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & \
        (pixels[..., 2] < 60)
    rows, columns = np.flatnonzero(red.any(axis=1)), \
        np.flatnonzero(red.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1], columns[0], columns[-1]
    # The red panel is solid: one rectangle.
    assert red[top:bottom + 1, left:right + 1].mean() > 0.95
    band = np.abs(pixels[top:bottom + 1] - 255).sum(axis=2) > 30
    marked = np.flatnonzero(band[:, right + 1:].any(axis=0)) + right + 1
    segmentation_left = marked[0]
    gap = segmentation_left - right - 1
    assert gap <= vis.PANEL_GAP * 100 + 2, gap
    # The segmentation panel is as wide as the input panel, then the
    # legend starts within a few pixels.
    segmentation_right = segmentation_left + (right - left)
    assert band[:, segmentation_left:segmentation_right + 1].mean() > 0.95
    after = marked[marked > segmentation_right + 1]
    assert len(after), 'no legend right of the panels'
    legend_gap = after[0] - segmentation_right - 1
    assert legend_gap <= 0.12 * 100, legend_gap
    # Nothing but the legend right of the panels: no blank room left but
    # the margin of the tight bounding box (0.1 inch) and the legend's.
    assert pixels.shape[1] - 1 - after[-1] <= 0.25 * 100


def test_figure_of_a_speck_class_folds_it():
    label = np.zeros((50, 50), np.int32)
    label[0, 0] = 2  # 1 pixel of 2500: 0.04 %
    label[10:20] = 1
    fig, handles = vis.segmentation_figure(
        np.zeros((3, 50, 50)), label, ('a', 'b', 'c'),
        vis.generate_label_colors(3))
    texts = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert texts == ['a 80.0 %', 'b 20.0 %', '+1 more (< 0.1 %)']
    assert [h.get_label() for h in handles] == texts
