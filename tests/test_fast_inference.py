"""The numpy inference path against Chainer's functions and plain forward."""

import os
import subprocess
import sys

import chainer
import chainer.functions as F
import numpy as np
import pytest

from pspnet import PSPNetResNet50
from pspnet.inference import blas
from pspnet.inference import buffers
from pspnet.inference import fast_forward
from pspnet.inference import fast_network_scores
from pspnet.inference import folding
from pspnet.inference import kernels
from pspnet.inference import network
from pspnet.inference import release_buffers
from pspnet.inference import threads
from pspnet.inference import unsupported_reason
from pspnet.inference import winograd
from tests.helpers.random_weights import randomize_batch_normalization
from tests.helpers.random_weights import sensitive_model
from tests.helpers.random_weights import smooth_image

N_CLASS = 7
SIZE = 65


@pytest.fixture(scope='module')
def model():
    """ResNet50 with random weights whose labels change often across an
    image: the classifier is amplified and centred so that every class
    wins somewhere and small errors would flip labels."""
    return sensitive_model(PSPNetResNet50, N_CLASS, SIZE,
                           np.random.RandomState(0))


def feature_map(x):
    """(B, C, H, W) -> the (C + 1, B, H, W) channel-major feature map of
    the fast path, ones channel last."""
    batch, channels, height, width = x.shape
    out = np.empty((channels + 1, batch, height, width), np.float32)
    out[:channels] = x.transpose(1, 0, 2, 3)
    out[channels] = 1
    return out


def reference_tap_matrix(conv, bn, tap):
    """The (C_out, C_in + 1) matrix of one kernel tap with batch
    normalization folded in, computed in float64 from the definition:
    ``gamma / sqrt(var + eps)`` scales the weights; the bias (convolution
    bias and BN shift) sits at the centre tap."""
    W = conv.W.array.astype(np.float64)
    out_channels, in_channels, kh, kw = W.shape
    scale = bn.gamma.array / np.sqrt(bn.avg_var.astype(np.float64) + bn.eps)
    bias = (conv.b.array - bn.avg_mean) * scale + bn.beta.array
    matrix = np.zeros((out_channels, in_channels + 1))
    matrix[:, :-1] = W[:, :, tap // kw, tap % kw] * scale[:, None]
    if tap == (kh // 2) * kw + kw // 2:
        matrix[:, -1] = bias
    return matrix.astype(np.float32)


def plain_forward(link, x):
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        return link.forward(x).array


def relative_error(got, expected):
    return np.abs(got - expected).max() / np.abs(expected).max()


def plain_predict_scores(link, img):
    try:
        link.fast_inference = False
        return link.predict_scores(img)
    finally:
        link.fast_inference = True


# Kernels against the Chainer functions they replace.

@pytest.mark.parametrize('ksize,stride,pad,dilate,size', [
    (3, 1, 1, 1, (9, 11)),
    (3, 2, 1, 1, (9, 11)),    # odd input, strided (stem, res3)
    (3, 2, 1, 1, (10, 7)),
    (3, 1, 2, 2, (9, 8)),     # res4
    (3, 1, 4, 4, (9, 10)),    # res5: dilation close to the image size
    (3, 1, 4, 4, (3, 4)),     # taps entirely outside the image
    (1, 1, 0, 1, (5, 6)),
    (1, 2, 0, 1, (7, 6)),     # strided projection
])
@pytest.mark.parametrize('column_floats', [10 ** 7, 1])
def test_convolutions_match_chainer(ksize, stride, pad, dilate, size,
                                    column_floats):
    rng = np.random.RandomState(1)
    conv = chainer.links.Convolution2D(
        5, 4, ksize, stride, pad, dilate=dilate, nobias=False)
    conv.b.array[:] = rng.randn(4)
    bn = chainer.links.BatchNormalization(4)
    randomize_batch_normalization(bn, rng)
    x = rng.randn(2, 5, *size).astype(np.float32)
    with chainer.using_config('train', False):
        expected = bn(conv(x)).array
    inputs = feature_map(x)
    out = np.full((4,) + expected.shape[:1] + expected.shape[2:], np.nan,
                  np.float32)
    if ksize == 1:
        kernels.conv1x1(inputs, folding.unfolded_matrix(conv, bn), out,
                        stride)
    else:
        # A one-float column buffer forces one output row per block.
        kernels.conv_unfolded(
            inputs, folding.unfolded_matrix(conv, bn), out, ksize, stride,
            pad, dilate, np.empty(column_floats, np.float32))
    np.testing.assert_allclose(out.transpose(1, 0, 2, 3), expected,
                               rtol=1e-5, atol=1e-5)
    if stride == 1 and 2 * pad == dilate * (ksize - 1) and ksize > 1:
        out[:] = np.nan
        kernels.conv_per_tap(
            inputs, lambda tap: reference_tap_matrix(conv, bn, tap), out,
            ksize, pad, dilate)
        np.testing.assert_allclose(out.transpose(1, 0, 2, 3), expected,
                                   rtol=1e-5, atol=1e-5)


def float64_conv(x, conv, bn, dilate):
    """bn(conv(x)) at inference in float64, (B, C_out, H, W)."""
    W = conv.W.array.astype(np.float64)
    scale = bn.gamma.array / np.sqrt(bn.avg_var.astype(np.float64) + bn.eps)
    bias = (conv.b.array - bn.avg_mean) * scale + bn.beta.array
    return F.convolution_2d(x.astype(np.float64),
                            W * scale[:, None, None, None], bias,
                            pad=dilate, dilate=dilate).array


@pytest.mark.parametrize('seed', range(18))
def test_winograd_matches_direct_convolution(seed, monkeypatch):
    """Random channel counts, odd and tiny sizes, dilations 1 to 4, the
    three tile sizes, batches of 1 and 2, with and without ReLU; small
    budgets force several input channel blocks and tile row chunks, and
    sizes past a chunk of tiles (``winograd_codelets.CHUNK``) leave a
    partial last chunk."""
    rng = np.random.RandomState(100 + seed)
    in_channels, out_channels = rng.randint(1, 40, 2)
    dilate = (1, 2, 4, 3)[seed % 4]
    m = (2, 4, 6)[seed // 3 % 3]
    size = tuple(rng.randint(1, 23 if seed < 9 else 60, 2))
    batch = rng.randint(1, 3)
    relu = seed % 2 == 1
    if seed % 3 == 0:
        monkeypatch.setattr(winograd, 'BLOCK_BYTES', rng.randint(1, 20000))
        monkeypatch.setattr(winograd, 'PRODUCT_BYTES',
                            rng.randint(1, 40000))
    monkeypatch.setattr(winograd, 'GEMMS_PER_THREAD', seed % 2 == 0)
    conv = chainer.links.Convolution2D(in_channels, out_channels, 3, 1,
                                       dilate, dilate=dilate)
    conv.b.array[:] = rng.randn(out_channels)
    bn = chainer.links.BatchNormalization(out_channels)
    randomize_batch_normalization(bn, rng)
    x = rng.randn(batch, in_channels, *size).astype(np.float32)
    expected = float64_conv(x, conv, bn, dilate)
    if relu:
        expected = np.maximum(expected, 0)
    scale, bias = folding.scale_and_bias(conv, bn)
    out = np.full((out_channels, batch) + size, np.nan, np.float32)
    pool = buffers.BufferPool()
    inputs = feature_map(x)
    if seed % 4 == 1:
        # Not C-contiguous: the convolution copies it to the layout its
        # kernels index.
        wider = np.zeros(inputs.shape[:3] + (size[1] + 3,), np.float32)
        wider[..., :size[1]] = inputs
        inputs = wider[..., :size[1]]
    winograd.conv3x3(inputs, conv.W.array, scale, bias, out, m, dilate,
                     pool if seed % 2 else None, relu)
    got = out.transpose(1, 0, 2, 3)
    # F(4x4)'s and F(6x6)'s transforms lose about one and two more digits
    # than F(2x2)'s.
    assert relative_error(got, expected) <= {2: 1e-6, 4: 2e-5, 6: 1e-4}[m]


@pytest.mark.parametrize('size,dilate,channels,tile', [
    # PSPNet at 713: F(6x6) for all (res4, res5, the head's features part).
    (90, 2, (256, 256), 6), (90, 4, (512, 512), 6), (90, 1, (2048, 512), 6),
    # At 473: res5 (15x15 sub-grids) and the head (its filters outweigh
    # its tiles) by F(4x4), res4 by F(6x6).
    (60, 2, (256, 256), 6), (60, 4, (512, 512), 4), (60, 1, (2048, 512), 4),
    # The stem at 713 (many tiles, few channels); a map of one 6x6 tile,
    # where the filters cost the most.
    (357, 1, (64, 128), 6), (6, 1, (512, 512), 4)])
def test_choose_tile_compares_estimated_costs(size, dilate, channels, tile):
    assert winograd.choose_tile(size, size, dilate, *channels) == tile


@pytest.mark.parametrize('points,m', [((0, 1, -1, 0.5, -2), 4),
                                      ((0, 1, -1, 2, -2), 4),
                                      (winograd.POINTS_F6, 6),
                                      ((0, 1, -1), 2), ((0, 2, -0.5), 2)])
def test_toom_cook_transforms_compute_the_correlation(points, m):
    bt, g, at = winograd.toom_cook(points, m)
    rng = np.random.RandomState(19)
    d, f = rng.randn(m + 2), rng.randn(3)
    expected = [d[i:i + 3] @ f for i in range(m)]
    np.testing.assert_allclose(at @ ((g @ f) * (bt @ d)), expected,
                               rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match='points'):
        winograd.toom_cook(points[:-1], m)


@pytest.mark.parametrize('m', [2, 4, 6])
def test_codelets_apply_the_transform_matrices(m):
    """The generated straight-line transforms against the matrices they
    were written from, on random tiles."""
    from pspnet.inference import winograd_codelets as codelets
    chunk = codelets.CHUNK
    a = m + 2
    bt, _, at = winograd.matrices(m)
    rng = np.random.RandomState(m)
    tiles = rng.randn(chunk, a, a)
    taps = np.ascontiguousarray(
        tiles.reshape(chunk, a * a).T, dtype=np.float32).reshape(-1)
    out = np.empty(a * a * chunk, np.float32)
    scratch = np.empty(a * a * chunk, np.float32)
    codelets.INPUT[m](taps, out, scratch)
    expected = np.einsum('ku,fuv,lv->klf', bt, tiles, bt).reshape(-1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    products = rng.randn(a * a * chunk).astype(np.float32)
    for relu in (False, True):
        result = np.empty(m * m * chunk, np.float32)
        codelets.OUTPUT[m](products, np.float32(0.25), relu, result,
                           scratch)
        wanted = np.einsum('pk,klf,ql->pqf', at,
                           products.reshape(a, a, chunk).astype(np.float64),
                           at).reshape(-1) + 0.25
        if relu:
            wanted = np.maximum(wanted, 0)
        np.testing.assert_allclose(result, wanted, rtol=1e-5, atol=1e-4)


def test_codelets_are_what_the_generator_writes():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, '-m', 'tools.gen_winograd_codelets', '--check'],
        cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_winograd_rejects_other_tiles_and_shapes():
    with pytest.raises(ValueError, match='2, 4 or 6'):
        winograd.matrices(8)
    with pytest.raises(ValueError, match='output of shape'):
        winograd.conv3x3(np.zeros((3, 1, 5, 5), np.float32),
                         np.zeros((2, 4, 3, 3), np.float32),
                         np.ones(2, np.float32), np.zeros(2, np.float32),
                         np.zeros((2, 1, 5, 4), np.float32), 2, 1)


@pytest.mark.parametrize('tile', [2, 4, 6])
def test_forward_by_winograd_everywhere_matches_plain(model, tile,
                                                      monkeypatch):
    """Every stride-1 3x3 convolution (the stem's and res2's and res3's
    too) by Winograd, against plain Chainer."""
    monkeypatch.setattr(network, 'WINOGRAD_MIN_CHANNELS', 1)
    monkeypatch.setattr(network, 'WINOGRAD_TILE', tile)
    calls = []
    original = winograd.conv3x3
    monkeypatch.setattr(winograd, 'conv3x3',
                        lambda *args: calls.append(args[5]) or
                        original(*args))
    x = np.random.RandomState(16).uniform(
        -120, 120, (1, 3, 67, 61)).astype(np.float32)
    assert_same_logits(fast_forward(model, x), plain_forward(model, x))
    # conv1_2, conv1_3, every unit's conv2 but res3's first, head_conv1.
    assert calls == [tile] * (2 + 16 - 1 + 1)


@pytest.mark.parametrize('seed', range(6))
def test_head_convolution_of_upsampled_branches_without_upsampling(
        seed, monkeypatch):
    """The head's decomposition (the branches' part as W_tap y at the bins,
    then one GEMM with the shifted upsamplings) against the convolution
    of the concatenation, for random bins, sizes, channels and batch; the
    features' part by Winograd (even seeds) or the direct methods."""
    if seed % 2 == 0:
        monkeypatch.setattr(network, 'WINOGRAD_MIN_CHANNELS', 1)
    rng = np.random.RandomState(40 + seed)
    height, width = rng.randint(1, 30, 2)
    channels, out_channels = rng.randint(1, 9, 2)
    bins = [tuple(rng.randint(1, 7, 2)) for _ in range(rng.randint(1, 4))]
    branch_channels = list(rng.randint(1, 6, len(bins)))
    batch = rng.randint(1, 3)
    total = channels + sum(branch_channels)
    conv = chainer.links.Convolution2D(total, out_channels, 3, 1, 1)
    conv.b.array[:] = rng.randn(out_channels)
    bn = chainer.links.BatchNormalization(out_channels)
    randomize_batch_normalization(bn, rng)

    class ConvBN(object):
        pass
    head = ConvBN()
    head.conv, head.bn, head.activ = conv, bn, F.relu
    features = rng.randn(batch, channels, height, width).astype(np.float32)
    ys = [np.maximum(rng.randn(batch, c, *b), 0).astype(np.float32)
          for c, b in zip(branch_channels, bins)]
    concat = np.concatenate([features] + [
        F.resize_images(y, (height, width)).array for y in ys], axis=1)
    expected = np.maximum(float64_conv(concat, conv, bn, 1), 0)
    forward = network._Forward()
    got = forward.head(head, feature_map(features),
                       [feature_map(y) for y in ys])
    assert relative_error(got[:out_channels].transpose(1, 0, 2, 3),
                          expected) <= 2e-5


def test_without_numba_the_direct_methods_compute_every_convolution(
        model, monkeypatch):
    """Where Numba cannot be imported, the Winograd kernels are unavailable
    and the fast path still computes the network, by direct methods."""
    import pspnet.inference
    monkeypatch.setattr(winograd, '_compiled', None)
    monkeypatch.delattr(pspnet.inference, 'winograd_kernels', raising=False)
    monkeypatch.setitem(sys.modules, 'pspnet.inference.winograd_kernels',
                        None)
    assert not winograd.available()
    monkeypatch.setattr(winograd, 'conv3x3', None)  # would fail if called
    x = np.random.RandomState(17).uniform(
        -120, 120, (1, 3, SIZE, SIZE)).astype(np.float32)
    assert_same_logits(fast_forward(model, x), plain_forward(model, x))


def test_winograd_is_used_for_wide_dilated_and_head_convolutions(
        model, monkeypatch):
    seen = []
    original = winograd.conv3x3
    monkeypatch.setattr(winograd, 'conv3x3',
                        lambda x, f, *args: seen.append(
                            (f.shape[1], args[4])) or original(x, f, *args))
    fast_forward(model, np.zeros((1, 3, SIZE, SIZE), np.float32))
    # conv1_2 and conv1_3 (conv1_1 has stride 2), res2's 3, res3's last 3
    # (the first has stride 2), res4's 6 (dilation 2), res5's 3 (dilation
    # 4), the head's on res5's 2048 channels (the pyramid's part is a
    # GEMM).
    assert seen == [(64, 1)] * 5 + [(128, 1)] * 3 + [(256, 2)] * 6 + \
        [(512, 4)] * 3 + [(2048, 1)]


@pytest.mark.parametrize('ksize,stride,pad,in_channels', [
    (1, 1, 0, 5),     # a bottleneck's last convolution: one GEMM, beta = 1
    (1, 2, 0, 5),
    (3, 1, 1, 5),     # other shapes: computed apart, then added
    (3, 1, 1, 9),
])
def test_convolution_accumulates_onto_residual(ksize, stride, pad,
                                               in_channels):
    rng = np.random.RandomState(3)
    conv = chainer.links.Convolution2D(in_channels, 4, ksize, stride, pad)
    bn = chainer.links.BatchNormalization(4)
    randomize_batch_normalization(bn, rng)
    x = rng.randn(2, in_channels, 8, 7).astype(np.float32)
    with chainer.using_config('train', False):
        conv_bn = bn(conv(x)).array
    residual = rng.randn(*conv_bn.shape).astype(np.float32)
    forward = network._Forward()
    inputs = forward.feature_map(in_channels, 2, 8, 7)
    inputs[:in_channels] = x.transpose(1, 0, 2, 3)
    reuse = forward.feature_map(4, *conv_bn.shape[:1], *conv_bn.shape[2:])
    reuse[:4] = residual.transpose(1, 0, 2, 3)
    out = forward.conv(conv, bn, F.relu, inputs, reuse, accumulate=True)
    assert out is reuse
    np.testing.assert_allclose(
        out[:4].transpose(1, 0, 2, 3), np.maximum(conv_bn + residual, 0),
        rtol=1e-5, atol=1e-5)
    assert (out[4] == 1).all()
    with pytest.raises(ValueError, match='cannot accumulate'):
        forward.conv(conv, bn, None, inputs, reuse[:, :1], accumulate=True)


@pytest.mark.parametrize('size', [(7, 9), (8, 8), (357, 6), (1, 2)])
def test_max_pooling_covers_all_like_chainer(size):
    x = np.random.RandomState(2).randn(3, 2, *size).astype(np.float32)
    expected = F.max_pooling_2d(x.transpose(1, 0, 2, 3), 3, 2, 1).array
    got = kernels.max_pool_cover_all(x, 3, 2, 1)
    np.testing.assert_array_equal(got.transpose(1, 0, 2, 3), expected)


def test_max_pooling_feature_size_at_713():
    x = np.zeros((1, 1, 357, 357), np.float32)
    assert kernels.max_pool_cover_all(x, 3, 2, 1).shape == (1, 1, 179, 179)


@pytest.mark.parametrize('size,ksize', [((90, 90), (14, 14)),
                                        ((90, 90), (89, 89)),
                                        ((13, 11), (4, 3)),
                                        ((9, 9), (9, 9))])
def test_grid_average_pooling_drops_the_rest_like_chainer(size, ksize):
    x = np.random.RandomState(3).randn(4, 2, *size).astype(np.float32)
    expected = F.average_pooling_2d(x.transpose(1, 0, 2, 3), ksize,
                                    ksize).array
    got = kernels.average_pool_grid(x, ksize)
    np.testing.assert_allclose(got.transpose(1, 0, 2, 3), expected,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('in_size,out_size', [((1, 1), (9, 12)),
                                              ((2, 3), (9, 10)),
                                              ((6, 6), (12, 12)),
                                              ((12, 9), (97, 65)),
                                              ((9, 9), (4, 5))])
def test_bilinear_resize_like_chainer(in_size, out_size):
    x = np.random.RandomState(4).randn(3, 2, *in_size).astype(np.float32)
    expected = F.resize_images(x.transpose(1, 0, 2, 3), out_size).array
    got = kernels.resize_bilinear(x, out_size)
    np.testing.assert_allclose(got.transpose(1, 0, 2, 3), expected,
                               rtol=1e-5, atol=1e-6)


def test_softmax_like_chainer():
    x = np.random.RandomState(5).randn(2, 6, 3, 4).astype(np.float32) * 20
    expected = F.softmax(x).array
    got = kernels.softmax_(np.ascontiguousarray(x.transpose(1, 0, 2, 3)))
    np.testing.assert_allclose(got.transpose(1, 0, 2, 3), expected,
                               rtol=1e-5, atol=1e-7)


# The whole network.

def assert_same_logits(got, expected):
    assert got.shape == expected.shape
    assert relative_error(got, expected) <= 1e-4
    agree = (got.argmax(axis=1) == expected.argmax(axis=1)).mean()
    assert agree >= 0.999, agree


def assert_same_scores(got, expected, axis):
    # The amplified classifier turns logit errors of a few 1e-6 relative
    # into probability differences of 1e-3 at class boundaries (measured on
    # the 97x130 image of test_predict_matches_plain: 1.4e-3 with direct
    # convolutions, 2.5e-3 with F(6x6) everywhere, logits within 5.4e-6).
    np.testing.assert_allclose(got, expected, atol=4e-3)
    agree = (got.argmax(axis=axis) == expected.argmax(axis=axis)).mean()
    assert agree >= 0.999, agree


@pytest.mark.parametrize('batch,size', [(1, (SIZE, SIZE)), (2, (SIZE, SIZE)),
                                        (1, (71, 67))])
def test_forward_matches_plain(model, batch, size):
    x = np.random.RandomState(6).uniform(
        -120, 120, (batch, 3) + size).astype(np.float32)
    assert unsupported_reason(model, x) is None
    assert_same_logits(fast_forward(model, x), plain_forward(model, x))


def test_flip_averaged_scores_match_plain(model):
    img = smooth_image(np.random.RandomState(7), (SIZE, SIZE))
    x = (img - model.mean)[None]
    got = fast_network_scores(model, x, flip=True)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        model.fast_inference = False
        try:
            expected = model._network_scores(x)
        finally:
            model.fast_inference = True
    assert got.flags.c_contiguous
    assert_same_scores(got, expected, axis=1)


@pytest.mark.parametrize('size', [(50, 61),    # canvas, shrunk to fit
                                  (97, 130)])  # sliding windows
def test_predict_matches_plain(model, size):
    img = smooth_image(np.random.RandomState(8), size)
    fast = model.predict_scores(img)
    plain = plain_predict_scores(model, img)
    assert_same_scores(fast, plain, axis=0)
    assert len(np.unique(plain.argmax(axis=0))) > 1


def test_forward_without_the_blas_library_matches(model, monkeypatch):
    """The numpy fallback of the GEMMs (no scipy-openblas32) computes the
    same network."""
    x = np.random.RandomState(12).uniform(
        -120, 120, (1, 3, SIZE, SIZE)).astype(np.float32)
    expected = fast_forward(model, x).copy()
    monkeypatch.setattr(blas, '_loaded', True)
    monkeypatch.setattr(blas, '_sgemm', None)
    got = fast_forward(model, x)
    assert relative_error(got, expected) < 1e-5
    assert (got.argmax(1) == expected.argmax(1)).mean() > 0.999


def test_predict_uses_fast_path_only_at_inference(model, monkeypatch):
    calls = []
    real = fast_network_scores

    def counting(*args):
        calls.append(args[1].shape)
        return real(*args)

    monkeypatch.setattr('pspnet.inference.fast_network_scores', counting)
    img = smooth_image(np.random.RandomState(9), (SIZE, SIZE))
    model.predict([img])
    assert calls == [(1, 3, SIZE, SIZE)]
    model.fast_inference = False
    try:
        model.predict([img])
    finally:
        model.fast_inference = True
    assert len(calls) == 1
    x = (img - model.mean)[None]
    with chainer.using_config('train', True):
        model._network_scores(x)   # BN in training mode: the plain path
    assert len(calls) == 1


def test_parameters_changed_in_place_are_used(model):
    """No folded copy outlives a call: in-place updates (what optimizers
    do) and statistics changes show in the next prediction."""
    x = np.random.RandomState(10).uniform(
        -120, 120, (1, 3, SIZE, SIZE)).astype(np.float32)
    before = fast_forward(model, x)
    conv = model.extractor.res4.a.conv2
    saved = (conv.conv.W.array.copy(), conv.bn.avg_var.copy(),
             model.head_conv1.bn.beta.array.copy())
    try:
        conv.conv.W.array *= 1.5
        conv.bn.avg_var[:] *= 0.5
        model.head_conv1.bn.beta.array += 0.3
        after = fast_forward(model, x)
        assert relative_error(after, before) > 1e-2
        assert_same_logits(after, plain_forward(model, x))
    finally:
        conv.conv.W.array[:] = saved[0]
        conv.bn.avg_var[:] = saved[1]
        model.head_conv1.bn.beta.array[:] = saved[2]
    np.testing.assert_array_equal(fast_forward(model, x), before)


def test_reloaded_weights_are_used(model, tmp_path):
    x = np.random.RandomState(11).uniform(
        -120, 120, (1, 3, SIZE, SIZE)).astype(np.float32)
    path = str(tmp_path / 'model.npz')
    chainer.serializers.save_npz(path, model, compression=False)
    link = PSPNetResNet50(N_CLASS, input_size=SIZE,
                          initialW=chainer.initializers.Zero())
    link.head_conv2.b.array[:] = np.arange(N_CLASS)
    first = fast_forward(link, x)
    chainer.serializers.load_npz(path, link)
    reloaded = fast_forward(link, x)
    assert relative_error(reloaded, first) > 1e-2
    assert_same_logits(reloaded, plain_forward(model, x))


def test_unsupported_models_fall_back(model):
    x = np.zeros((1, 3, SIZE, SIZE), np.float32)
    assert unsupported_reason(model, x.astype(np.float64)) is not None
    activ = model.extractor.res2.a.conv1.activ
    try:
        model.extractor.res2.a.conv1.activ = F.sigmoid
        assert 'activation' in unsupported_reason(model, x)
        # predict still works, through forward.
        label, = model.predict([np.zeros((3, 40, 40), np.float32)])
        assert label.shape == (40, 40)
    finally:
        model.extractor.res2.a.conv1.activ = activ


# The pieces around the kernels.

def test_tap_matrices_gather_every_tap():
    rng = np.random.RandomState(13)
    conv = chainer.links.Convolution2D(
        20, 6, 3, 1, 1, initialW=rng.randn(6, 20, 3, 3).astype(np.float32))
    conv.b.array[:] = rng.randn(6)
    bn = chainer.links.BatchNormalization(6)
    randomize_batch_normalization(bn, rng)
    matrices = folding.tap_matrices(conv, bn)
    assert matrices.shape == (9, 6, 21)
    for tap in range(9):
        np.testing.assert_allclose(matrices[tap],
                                   reference_tap_matrix(conv, bn, tap),
                                   rtol=1e-6, atol=1e-6)
    # The same float32 entries, summed in float64 so that the order of
    # the additions does not matter.
    np.testing.assert_allclose(
        matrices[:, :, :-1].astype(np.float64).sum(axis=0),
        folding.unfolded_matrix(conv, bn)[:, :-1].astype(np.float64)
        .reshape(6, 20, 9).sum(axis=2), rtol=1e-5)


@pytest.mark.parametrize('seed', range(8))
def test_average_pool_pyramid_matches_each_grid(seed):
    """Coarse grids from finer ones where the windows nest (PSPNet's bins
    at 713 and 473), directly where they do not (sizes not divisible by
    the bins, with remainders dropped)."""
    rng = np.random.RandomState(seed)
    height, width = (90, 60) if seed == 0 else rng.randint(1, 50, 2)
    bins = (1, 2, 3, 6) if seed < 4 else tuple(rng.randint(1, 8, 3))
    ksizes = [(max(1, height // b), max(1, width // b)) for b in bins]
    x = rng.randn(3, 2, height, width).astype(np.float32)
    for got, ksize in zip(kernels.average_pool_pyramid(x, ksizes), ksizes):
        expected = F.average_pooling_2d(x, ksize, ksize).array
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_buffer_pool_recycles_and_trims():
    pool = buffers.BufferPool()
    a = pool.take((4, 5))
    pool.give(a)
    b = pool.take((2, 3))   # fits in a's buffer
    assert np.shares_memory(a, b) and b.shape == (2, 3)
    c = pool.take((10, 10))  # a's buffer is taken: a new one
    assert not np.shares_memory(b, c)
    pool.give(b, c, None)
    pool.give(c)             # twice is harmless
    assert len(pool._free) == 2
    pool.trim()              # both were taken since the last trim
    assert len(pool._free) == 2
    pool.take((3,))
    pool.trim()              # one was not taken: dropped
    assert len(pool._free) == 0
    with pytest.raises(ValueError):
        pool.give(np.zeros(3, np.float64))


def test_buffer_pool_drops_free_buffers_too_small_for_a_new_one():
    pool = buffers.BufferPool()
    small, big = pool.take((10,)), pool.take((50,))
    pool.give(small, big)
    assert np.shares_memory(pool.take((40,)), big)   # best fit, no new one
    assert len(pool._free) == 1
    pool.take((60,))                                 # a new buffer
    assert pool._free == [] and pool.allocations == 3


@pytest.mark.parametrize('count', [0, 1, 2, 7])
def test_parallel_ranges_cover_the_range_once(monkeypatch, count):
    monkeypatch.setattr(threads, 'THREADS', 3)
    seen = np.zeros(count, int)

    def work(start, stop):
        seen[start:stop] += 1

    threads.parallel_ranges(work, count)
    assert (seen == 1).all()

    def fail(start, stop):
        raise RuntimeError('boom')

    if count:
        with pytest.raises(RuntimeError):
            threads.parallel_ranges(fail, count)


@pytest.mark.parametrize('m,k,n', [(5, 7, 3), (1, 4, 6), (6, 1, 5)])
@pytest.mark.parametrize('transpose_a,transpose_b', [
    (False, True), (True, False), (True, True)])
def test_gemm_of_transposed_operands(m, k, n, transpose_a, transpose_b):
    rng = np.random.RandomState(17)
    a = rng.randn(k, m).astype(np.float32).T if transpose_a else \
        rng.randn(m, k).astype(np.float32)
    b = rng.randn(n, k).astype(np.float32).T if transpose_b else \
        rng.randn(k, n).astype(np.float32)
    out = np.full((m, n), np.nan, np.float32)
    blas.gemm(a, b, out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize('count', [0, 1, 5])
def test_gemm_many_computes_every_product(monkeypatch, count):
    monkeypatch.setattr(threads, 'THREADS', 3)
    rng = np.random.RandomState(18)
    products = [(rng.randn(4, 6).astype(np.float32),
                 rng.randn(6, 5).astype(np.float32),
                 rng.randn(4, 5).astype(np.float32), float(i % 2))
                for i in range(count)]
    expected = [beta * out + a.astype(np.float64) @ b
                for a, b, out, beta in products]
    blas.gemm_many(products)
    for (_, _, out, _), want in zip(products, expected):
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('count', [0, 1, 2, 7])
def test_parallel_items_take_each_item_once(monkeypatch, count):
    monkeypatch.setattr(threads, 'THREADS', 3)
    seen = np.zeros(count, int)

    def work(i):
        seen[i] += 1

    threads.parallel_items(work, count)
    assert (seen == 1).all()
    if count:
        with pytest.raises(RuntimeError):
            threads.parallel_items(
                lambda i: (_ for _ in ()).throw(RuntimeError('boom')), count)


def test_repeated_calls_reuse_buffers_and_agree(model):
    x = np.random.RandomState(14).uniform(
        -120, 120, (1, 3, SIZE, SIZE)).astype(np.float32)
    first = fast_forward(model, x).copy()
    pool = network._pools[model]
    np.testing.assert_array_equal(fast_forward(model, x), first)
    assert network._pools[model] is pool
    # Every buffer a call takes goes back to the pool: the next identical
    # call allocates nothing.
    allocations = pool.allocations
    fast_forward(model, x)
    assert pool.allocations == allocations
    release_buffers(model)
    assert model not in network._pools
    np.testing.assert_array_equal(fast_forward(model, x), first)
