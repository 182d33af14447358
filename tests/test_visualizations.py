"""Colour masks, overlays, legends and figures of segmentations."""

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from pspnet import datasets
from pspnet import visualizations as vis


@pytest.fixture
def label():
    return np.array([[0, 1, -1],
                     [2, 2, 0]], np.int32)


COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
NAMES = ('red thing', 'green thing', 'blue thing')


def test_generated_colors_distinct_and_not_black():
    for n_class in (1, 7, 150, 1000):
        colors = vis.generate_label_colors(n_class)
        assert colors.shape == (n_class, 3) and colors.dtype == np.uint8
        assert len({tuple(c) for c in colors}) == n_class
        assert colors.max(axis=1).min() > 0


def test_label_names_and_colors_of_datasets():
    names, colors = vis.label_names_and_colors(19, 'cityscapes')
    assert names == tuple(
        datasets.cityscapes_semantic_segmentation_label_names)
    np.testing.assert_array_equal(
        colors, datasets.cityscapes_semantic_segmentation_label_colors)
    assert colors.shape == (19, 3) and colors.dtype == np.uint8
    # Without a dataset the class count picks it.
    names, colors = vis.label_names_and_colors(150)
    assert names == tuple(datasets.ade20k_semantic_segmentation_label_names)
    names, _ = vis.label_names_and_colors(21)
    assert names == tuple(datasets.voc_semantic_segmentation_label_names)


def test_label_names_and_colors_generated():
    names, colors = vis.label_names_and_colors(7)
    assert names == tuple('class {}'.format(i) for i in range(7))
    np.testing.assert_array_equal(colors, vis.generate_label_colors(7))
    # A dataset whose class count differs from the model's is not used.
    names, _ = vis.label_names_and_colors(7, 'cityscapes')
    assert names[0] == 'class 0'


def test_colorize_label(label):
    color = vis.colorize_label(label, COLORS)
    assert color.shape == (3, 2, 3) and color.dtype == np.uint8
    np.testing.assert_array_equal(color[:, 0, 0], [255, 0, 0])
    np.testing.assert_array_equal(color[:, 0, 1], [0, 255, 0])
    np.testing.assert_array_equal(color[:, 0, 2], [0, 0, 0])  # ignored
    np.testing.assert_array_equal(color[:, 1, 1], [0, 0, 255])
    with pytest.raises(ValueError, match='must lie in'):
        vis.colorize_label(label + 2, COLORS)


def test_overlay_label(label):
    img = np.full((3, 2, 3), 100, np.float32)
    out = vis.overlay_label(img, label, COLORS, alpha=0.25)
    assert out.shape == (3, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0, 0], [139, 75, 75])
    np.testing.assert_array_equal(out[:, 0, 2], [100, 100, 100])  # ignored
    np.testing.assert_array_equal(
        vis.overlay_label(img, label, COLORS, alpha=1),
        np.where(label >= 0, vis.colorize_label(label, COLORS), 100))
    with pytest.raises(ValueError):
        vis.overlay_label(img, label, COLORS, alpha=2)


def test_legend_lists_classes_present(label):
    handles = vis.legend_handles(label[:1], NAMES, COLORS)
    assert [h.get_label() for h in handles] == ['red thing', 'green thing']
    assert handles[1].get_facecolor()[:3] == to_rgb('#00ff00')


def test_segmentation_figure(label, tmp_path):
    img = np.random.RandomState(0).uniform(0, 255, (3, 2, 3))
    fig, handles = vis.segmentation_figure(img, label, NAMES, COLORS,
                                           title='demo')
    image_ax, label_ax = fig.axes
    legend = label_ax.get_legend()
    # The legend by area: 2 red, 2 blue, 1 green pixel of 5.
    by_area = ['red thing 40.0 %', 'blue thing 40.0 %', 'green thing 20.0 %']
    assert [t.get_text() for t in legend.get_texts()] == by_area
    assert [h.get_label() for h in handles] == by_area
    np.testing.assert_array_equal(label_ax.images[0].get_array(),
                                  vis.colorize_label(label, COLORS)
                                  .transpose(1, 2, 0))
    np.testing.assert_array_equal(image_ax.images[0].get_array(),
                                  img.transpose(1, 2, 0).astype(np.uint8))
    path = tmp_path / 'out' / 'figure.png'
    vis.save_figure(fig, str(path))
    assert path.read_bytes()[:4] == b'\x89PNG'


def test_figure_of_many_classes_uses_columns():
    n_class = 150
    label = np.arange(n_class, dtype=np.int32).reshape(10, 15)
    names, colors = vis.label_names_and_colors(n_class, 'ade20k')
    fig, handles = vis.segmentation_figure(
        np.zeros((3, 10, 15)), label, names, colors)
    assert len(handles) == n_class
    assert fig.axes[1].get_legend()._ncols > 1


def test_figure_without_classes():
    label = np.full((4, 4), -1, np.int32)
    fig, handles = vis.segmentation_figure(np.zeros((3, 4, 4)), label, NAMES,
                                           COLORS)
    assert handles == [] and fig.axes[1].get_legend() is None
