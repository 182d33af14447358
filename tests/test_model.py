"""The PSPNet link: ChainerCV's parameter tree, weight files, prediction."""

import json
import os

import chainer
import chainer.functions as F
import numpy as np
import pytest

from pspnet import PSPNetResNet101
from pspnet import PSPNetResNet50
from pspnet import transforms
from pspnet.errors import UserError
from pspnet.pretrained import link_shapes

DATA = os.path.join(os.path.dirname(__file__), 'data')
N_CLASS = 7
SIZE = 64


def chainercv_tree(depth):
    # Written by crosscheck/dump_param_tree.py from ChainerCV 0.13.1.
    path = os.path.join(DATA,
                        'chainercv_param_tree_resnet{}_n7.json'.format(depth))
    with open(path) as f:
        return {name: tuple(shape) for name, shape in json.load(f).items()}


@pytest.fixture(scope='module')
def model():
    np.random.seed(0)
    return PSPNetResNet50(N_CLASS, input_size=SIZE)


@pytest.fixture(scope='module')
def weights(model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('weights') / 'model.npz')
    chainer.serializers.save_npz(path, model, compression=False)
    return path


def random_image(rng, H, W):
    return rng.uniform(0, 255, (3, H, W)).astype(np.float32)


@pytest.mark.parametrize('depth,cls', [(50, PSPNetResNet50),
                                       (101, PSPNetResNet101)])
def test_parameter_tree_is_chainercvs(depth, cls):
    link = cls(N_CLASS, input_size=(97, 97),
               initialW=chainer.initializers.Zero())
    assert link_shapes(link) == chainercv_tree(depth)


def test_saved_file_has_chainercvs_arrays(weights):
    with np.load(weights) as npz:
        assert {k: npz[k].shape for k in npz.files} == chainercv_tree(50)


def test_save_load_round_trip(model, weights):
    loaded = PSPNetResNet50(pretrained_model=weights, input_size=SIZE)
    assert loaded.n_class == N_CLASS
    params = dict(model.namedparams())
    for name, param in loaded.namedparams():
        np.testing.assert_array_equal(param.array, params[name].array)
    bn = dict(model.namedlinks())['/extractor/conv1_1/bn']
    loaded_bn = dict(loaded.namedlinks())['/extractor/conv1_1/bn']
    np.testing.assert_array_equal(loaded_bn.avg_var, bn.avg_var)
    img = random_image(np.random.RandomState(1), 40, 56)
    np.testing.assert_array_equal(loaded.predict([img])[0],
                                  model.predict([img])[0])


def test_forward_gives_logits_at_input_size(model):
    x = np.zeros((2, 3, SIZE, SIZE), dtype=np.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        y = model(x)
    assert y.shape == (2, N_CLASS, SIZE, SIZE)
    assert y.dtype == np.float32


@pytest.mark.parametrize('shape', [(40, 56), (SIZE, SIZE), (13, 61)])
def test_predict_small_images(model, shape):
    rng = np.random.RandomState(2)
    label, = model.predict([random_image(rng, *shape)])
    assert label.shape == shape
    assert label.dtype == np.int32
    assert label.min() >= 0 and label.max() < N_CLASS
    scores = model.predict_scores(random_image(rng, *shape))
    assert scores.shape == (N_CLASS,) + shape
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(axis=0), 1, rtol=1e-5)


def test_predict_large_image_tiles(model):
    H, W = 70, 150  # larger than the 64 x 64 input: sliding windows
    img = random_image(np.random.RandomState(3), H, W)
    label, = model.predict([img])
    assert label.shape == (H, W)
    assert label.dtype == np.int32
    assert label.min() >= 0 and label.max() < N_CLASS
    scores = model.predict_scores(img)
    assert scores.shape == (N_CLASS, H, W)
    np.testing.assert_allclose(scores.sum(axis=0), 1, rtol=1e-5)


def test_sliding_windows_cover_every_pixel():
    for H, W in [(70, 150), (64, 65), (200, 97), (713, 1000)]:
        size = (64, 64)
        stride = (43, 43)
        count = np.zeros((H, W), dtype=np.int32)
        for corner in transforms.sliding_windows(H, W, size, stride):
            (iy, ix), (wy, wx) = transforms.window_slices(corner, size, H, W)
            assert (iy.stop - iy.start, ix.stop - ix.start) == \
                (wy.stop - wy.start, wx.stop - wx.start)
            count[iy, ix] += 1
        assert count.min() >= 1


def test_tiled_prediction_averages_windows_over_every_pixel(model,
                                                            monkeypatch):
    windows = []

    def window_scores(x):
        windows.append(x.shape)
        # Class k scores k + 1 in every window: the average keeps that
        # exactly where windows cover, and divides by zero where none does.
        return np.broadcast_to(
            np.arange(1, N_CLASS + 1, dtype=np.float32)[None, :, None, None],
            (len(x), N_CLASS) + x.shape[2:]).copy()

    monkeypatch.setattr(model, '_network_scores', window_scores)
    scores = model.predict_scores(np.zeros((3, 100, 170), np.float32))
    assert len(windows) == len(transforms.sliding_windows(
        100, 170, (SIZE, SIZE), (43, 43))) > 1
    assert set(windows) == {(1, 3, SIZE, SIZE)}
    expected = np.arange(1, N_CLASS + 1, dtype=np.float32)[:, None, None]
    np.testing.assert_array_equal(scores, np.broadcast_to(
        expected, (N_CLASS, 100, 170)))


def test_flip_averages_with_mirrored_image(model):
    img = random_image(np.random.RandomState(4), SIZE, SIZE)
    x = (img - model.mean)[None]
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        plain = F.softmax(model(x)).array[0]
        mirrored = F.softmax(model(x[:, :, :, ::-1].copy())).array[0]
    # predict_scores runs the fast path, whose GEMMs (another OpenBLAS)
    # round differently: logits agree within about 2e-6 relative.
    try:
        model.flip = False
        np.testing.assert_allclose(model.predict_scores(img), plain,
                                   atol=5e-5)
        model.flip = True
        np.testing.assert_allclose(model.predict_scores(img),
                                   (plain + mirrored[:, :, ::-1]) / 2,
                                   atol=5e-5)
        # Flip averaging makes prediction mirror-symmetric.
        np.testing.assert_allclose(
            model.predict_scores(img[:, :, ::-1].copy())[:, :, ::-1],
            model.predict_scores(img), atol=1e-5)
    finally:
        model.flip = True


def test_multi_scale(model):
    img = random_image(np.random.RandomState(5), 50, 60)
    try:
        model.scales = (1.0,)
        single = model.predict_scores(img)
        model.scales = (0.5, 1.0, 1.5)
        multi = model.predict_scores(img)
        label, = model.predict([img])
    finally:
        model.scales = None
    np.testing.assert_allclose(single, model.predict_scores(img), atol=1e-6)
    assert multi.shape == (N_CLASS, 50, 60)
    np.testing.assert_allclose(multi.sum(axis=0), 1, rtol=1e-5)
    assert not np.allclose(multi, single)
    assert label.shape == (50, 60) and label.dtype == np.int32


def test_too_small_input_size():
    with pytest.raises(UserError, match='too small'):
        PSPNetResNet50(N_CLASS, input_size=40)


def test_missing_weight_file(tmp_path):
    with pytest.raises(UserError, match='does not exist'):
        PSPNetResNet50(pretrained_model=str(tmp_path / 'nope.npz'))


def test_truncated_weight_file(weights, tmp_path):
    path = tmp_path / 'truncated.npz'
    with open(weights, 'rb') as f:
        path.write_bytes(f.read(1 << 20))
    with pytest.raises(UserError, match='truncated or corrupt'):
        PSPNetResNet50(pretrained_model=str(path), input_size=SIZE)


def test_random_bytes_weight_file(tmp_path):
    path = tmp_path / 'noise.npz'
    path.write_bytes(np.random.RandomState(6).bytes(5000))
    with pytest.raises(UserError,
                       match='not an .npz weight file'):
        PSPNetResNet50(pretrained_model=str(path), input_size=SIZE)


def test_weights_of_other_depth(weights):
    with pytest.raises(UserError, match='ResNet50 weights but the model is '
                       'ResNet101'):
        PSPNetResNet101(pretrained_model=weights, input_size=SIZE)


def test_weights_of_other_class_count(weights):
    with pytest.raises(UserError, match='trained for 7 classes but the '
                       'model has 5'):
        PSPNetResNet50(5, pretrained_model=weights, input_size=SIZE)


def test_extractor_only_weights(model, tmp_path):
    path = str(tmp_path / 'extractor.npz')
    chainer.serializers.save_npz(path, model.extractor, compression=False)
    with pytest.raises(UserError, match='only a ResNet extractor'):
        PSPNetResNet50(N_CLASS, pretrained_model=path, input_size=SIZE)
    with pytest.raises(UserError, match='holds no classifier'):
        PSPNetResNet50(pretrained_model=path, input_size=SIZE)
