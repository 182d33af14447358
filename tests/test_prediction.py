"""Whole-image prediction: every pixel of every image shape is covered by
the network's windows, on the plain and the fast path."""

import tracemalloc
import weakref

import numpy as np
import pytest

from pspnet import prediction
from pspnet import PSPNetResNet50
from pspnet import transforms
from tests.helpers.random_weights import sensitive_model
from tests.helpers.random_weights import smooth_image

N_CLASS = 5
SIZE = 48


def coverage(H, W, size):
    """How many windows cover each pixel, from the window geometry."""
    count = np.zeros((H, W), np.int32)
    for corner in transforms.sliding_windows(
            H, W, size, prediction.window_stride(size)):
        (iy, ix), (wy, wx) = transforms.window_slices(corner, size, H, W)
        assert (iy.stop - iy.start, ix.stop - ix.start) == \
            (wy.stop - wy.start, wx.stop - wx.start)
        count[iy, ix] += 1
    return count


def test_windows_cover_every_pixel_of_random_shapes():
    rng = np.random.RandomState(0)
    for _ in range(300):
        size = tuple(int(s) for s in rng.randint(48, 800, size=2))
        # Sides from 1 pixel to several windows, often one short side.
        H, W = (int(rng.choice([rng.randint(1, 60), rng.randint(1, 3000)]))
                for _ in range(2))
        count = coverage(H, W, size)
        assert count.min() >= 1, (H, W, size)
        n = len(transforms.sliding_windows(
            H, W, size, prediction.window_stride(size)))
        assert n == prediction.network_calls((H, W), size) or \
            not prediction.uses_windows((H, W), size)


@pytest.mark.parametrize('H,W', [(12, 300), (200, 1000), (1, 3000)])
def test_shapes_chainercv_leaves_uncovered(H, W):
    # At 713 these have no window rows in ChainerCV 0.13.1 (its scores are
    # 0 / 0 there); here each side has at least one.
    count = coverage(H, W, (713, 713))
    assert count.min() >= 1


@pytest.fixture(scope='module')
def model():
    return sensitive_model(PSPNetResNet50, N_CLASS, SIZE,
                           np.random.RandomState(1))


@pytest.mark.parametrize('shape', [(1, 1), (1, 130), (130, 1), (10, 200),
                                   (200, 10), (12, 97), (49, 50)])
def test_extreme_shapes_on_both_paths(model, shape):
    img = smooth_image(np.random.RandomState(sum(shape)), shape)
    model.flip = False
    try:
        fast = model.predict_scores(img)
        model.fast_inference = False
        plain = model.predict_scores(img)
    finally:
        model.fast_inference = True
        model.flip = True
    for scores in (fast, plain):
        assert scores.shape == (N_CLASS,) + shape
        assert np.isfinite(scores).all()
        np.testing.assert_allclose(scores.sum(axis=0), 1, rtol=1e-5)
    # The classifier is amplified 300 times: float32 rounding shows (the
    # Winograd layers of the fast path move a probability by up to 3.2e-3
    # at (200, 10), logits within 3e-6 relative), but not in the labels.
    np.testing.assert_allclose(fast, plain, atol=5e-3)
    assert (fast.argmax(axis=0) == plain.argmax(axis=0)).mean() >= 0.999


def test_scales_of_tiny_images_keep_a_pixel(model):
    img = smooth_image(np.random.RandomState(2), (1, 3))
    model.scales = (0.25, 0.5, 1.0)
    try:
        scores = model.predict_scores(img)
    finally:
        model.scales = None
    assert scores.shape == (N_CLASS, 1, 3) and np.isfinite(scores).all()


def test_progress_counts_every_network_call(model):
    calls = []
    shape = (60, 170)
    model.scales = (0.5, 1.0)
    try:
        model.predict([np.zeros((3,) + shape, np.float32)],
                      progress=lambda done, total: calls.append((done,
                                                                 total)))
    finally:
        model.scales = None
    total = prediction.network_calls(shape, (SIZE, SIZE), (0.5, 1.0))
    assert calls == [(i + 1, total) for i in range(total)]
    stride = prediction.window_stride((SIZE, SIZE))
    assert total == sum(len(transforms.sliding_windows(
        H, W, (SIZE, SIZE), stride)) for H, W in ((30, 85), (60, 170)))
    # A small image is one canvas.
    calls.clear()
    model.predict([np.zeros((3, 20, 30), np.float32)],
                  progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)]


def test_scores_given_in_parts_average_and_are_held_one_at_a_time():
    """A network_scores that gives an iterator of arrays (an image's
    scores, then its flip's) gets their mean, as one averaged array would,
    on windows and on the canvas, at random shapes; with windows (whose
    scores are the large arrays) the first array is released before the
    second is computed."""
    rng = np.random.RandomState(3)
    for k in range(16):
        size = (int(rng.randint(16, 40)), int(rng.randint(16, 40)))
        H, W = (int(rng.randint(4, 16 if k % 2 else 100)) for _ in range(2))
        n_class = int(rng.randint(2, 6))
        img = rng.uniform(0, 255, (3, H, W)).astype(np.float32)
        mean = rng.uniform(0, 255, (3, 1, 1)).astype(np.float32)
        weights = rng.normal(size=(n_class, 3)).astype(np.float32)

        def scores_of(x):
            y = np.einsum('kc,bchw->bkhw', weights, x) / 50
            e = np.exp(y - y.max(axis=1, keepdims=True))
            return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

        def averaged(x):
            flipped = scores_of(x[:, :, :, ::-1])[:, :, :, ::-1]
            return (scores_of(x) + flipped) / 2

        held = []

        def parts(x):
            first = scores_of(x)
            ref = weakref.ref(first)
            yield first
            del first
            held.append(ref() is not None)
            yield scores_of(x[:, :, :, ::-1])[:, :, :, ::-1]

        want = prediction.single_scale_scores(averaged, img, size, n_class,
                                              mean)
        got = prediction.single_scale_scores(parts, img, size, n_class,
                                             mean)
        assert got.shape == want.shape == (n_class, H, W)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        assert (got.argmax(axis=0) == want.argmax(axis=0)).mean() > 0.999
        assert len(held) == prediction.network_calls((H, W), size)
        if prediction.uses_windows((H, W), size):
            assert not any(held), held


def _linear_network(rng, n_class, levels=None):
    """Softmax scores of a random linear map of the window's pixels plus
    a term that grows with the column (so that a flipped window's scores
    differ from the window's): a deterministic function of what the
    window holds. With ``levels``, the logits are rounded to that many
    steps, so that equal scores (ties between classes) are common."""
    weights = rng.normal(size=(n_class, 3)).astype(np.float32)
    slopes = rng.normal(size=(1, n_class, 1, 1)).astype(np.float32)

    def scores_of(x):
        y = np.einsum('kc,bchw->bkhw', weights, x) / 50
        y = y + slopes * np.linspace(-2, 2, x.shape[3], dtype=np.float32)
        if levels:
            y = np.round(y * levels) / levels
        e = np.exp(y - y.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def parts(x):
        yield scores_of(x)
        yield scores_of(x[:, :, :, ::-1])[:, :, :, ::-1]
    return parts


def _whole_image_scores(network_scores, img, size, n_class, mean):
    """The averaged window scores with the whole image's array, written
    plainly (the windows in any order; sums differ in the last bits)."""
    H, W = img.shape[1:]
    total = np.zeros((n_class, H, W), np.float64)
    count = np.zeros((H, W), np.float64)
    for corner in transforms.sliding_windows(
            H, W, size, prediction.window_stride(size)):
        (iy, ix), (wy, wx) = transforms.window_slices(corner, size, H, W)
        window = np.zeros((1, 3) + size, np.float32)
        window[0, :, wy, wx] = img[:, iy, ix] - mean
        for part in network_scores(window):
            total[:, iy, ix] += part[0, :, wy, wx]
            count[iy, ix] += 1
    return total / count


def test_labels_band_by_band_are_the_labels_of_the_scores():
    """predict_labels labels an image covered by windows band by band:
    exactly the labels of predict_scores (ties among classes included),
    whose scores are the plain average of the windows', at random shapes
    (wide, tall, thinner than a window) and input sizes."""
    rng = np.random.RandomState(5)
    windowed = 0
    for k in range(40):
        size = (int(rng.randint(8, 40)), int(rng.randint(8, 40)))
        H = int(rng.randint(1, 4 * size[0]))
        W = int(rng.randint(1, 4 * size[1]))
        if k % 4 == 0:
            H = int(rng.randint(1, size[0] + 1))  # one row of windows
        n_class = int(rng.randint(2, 7))
        network = _linear_network(rng, n_class, levels=4 if k % 2 else None)
        img = rng.uniform(0, 255, (3, H, W)).astype(np.float32)
        mean = rng.uniform(0, 255, (3, 1, 1)).astype(np.float32)
        scores = prediction.predict_scores(network, img, size, n_class,
                                           mean)
        labels = prediction.predict_labels(network, img, size, n_class,
                                           mean)
        assert labels.shape == (H, W) and labels.dtype == np.int32
        np.testing.assert_array_equal(labels, prediction.labels_of(scores))
        np.testing.assert_array_equal(labels, scores.argmax(axis=0))
        if not prediction.uses_windows((H, W), size):
            continue  # one canvas: no bands
        windowed += 1
        np.testing.assert_allclose(
            scores, _whole_image_scores(network, img, size, n_class, mean),
            rtol=1e-6, atol=1e-7)
    assert windowed >= 25


@pytest.mark.parametrize('shape', [(40, 900), (900, 40), (300, 300)])
def test_labels_hold_the_scores_of_at_most_the_input_width(shape):
    """The largest arrays predict_labels allocates (traced by
    tracemalloc) are the scores of the columns that windows still reach,
    at most n_class x H x input width, where predict_scores holds those of
    the whole image."""
    rng = np.random.RandomState(6)
    size, n_class = (32, 32), 10
    network = _linear_network(rng, n_class)
    img = rng.uniform(0, 255, (3,) + shape).astype(np.float32)
    mean = np.zeros((3, 1, 1), np.float32)
    H, W = shape
    peaks = {}
    for name, function in (('labels', prediction.predict_labels),
                           ('scores', prediction.predict_scores)):
        tracemalloc.start()
        result = function(network, img, size, n_class, mean)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del result
    whole = n_class * H * W * 4
    held = n_class * H * min(W, size[1]) * 4
    assert peaks['scores'] >= whole
    # The held columns, their count, the labels, one window's scores and
    # the shift of one class's columns.
    assert peaks['labels'] <= held * 1.2 + H * W * 5 + 3 * n_class * 32 * 32 \
        * 4 + 64 * 1024, (peaks, held)
    if W > 4 * size[1]:
        assert peaks['labels'] < whole / 2


def test_the_link_predicts_the_labels_of_its_scores(model):
    """PSPNet.predict (fast path and Chainer's) gives the labels of
    predict_scores exactly, on an image covered by windows."""
    img = smooth_image(np.random.RandomState(7), (70, 150))
    try:
        for fast in (True, False):
            model.fast_inference = fast
            labels, = model.predict([img])
            np.testing.assert_array_equal(
                labels, prediction.labels_of(model.predict_scores(img)))
    finally:
        model.fast_inference = True
