"""The training augmentation: sizes, ignored fill, labels never blended."""

import numpy as np
import pytest

from pspnet.links.pspnet import IMAGENET_MEAN
from pspnet.training import augmentation
from pspnet.training.augmentation import TrainTransform

CROP = (64, 64)


def _pair(rng, size, values=(0, 3, 7, -1), block=8):
    h, w = size
    small = rng.choice(np.asarray(values, dtype=np.int32),
                       size=(-(-h // block), -(-w // block)))
    label = np.repeat(np.repeat(small, block, 0), block, 1)[:h, :w]
    img = rng.uniform(0, 255, size=(3, h, w)).astype(np.float32)
    return img, np.ascontiguousarray(label, dtype=np.int32)


@pytest.mark.parametrize('size', [(64, 96), (40, 50), (200, 120), (30, 300)])
def test_output_shapes_and_dtypes(size):
    np.random.seed(0)
    transform = TrainTransform(IMAGENET_MEAN, CROP)
    for _ in range(5):
        img, label = transform(_pair(np.random.RandomState(1), size))
        assert img.shape == (3,) + CROP and img.dtype == np.float32
        assert label.shape == CROP and label.dtype == np.int32
        assert img.flags.c_contiguous and label.flags.c_contiguous


def test_non_square_crop():
    np.random.seed(0)
    img, label = TrainTransform(IMAGENET_MEAN, (48, 80))(
        _pair(np.random.RandomState(0), (100, 150)))
    assert img.shape == (3, 48, 80) and label.shape == (48, 80)


def test_rotation_fills_corners_with_ignore_label_and_black():
    img = np.full((3, 64, 64), 200, dtype=np.float32)
    label = np.full((64, 64), 5, dtype=np.int32)
    rotated_img, rotated_label = augmentation.rotate(img, label, 10.0)
    assert rotated_label.dtype == np.int32
    for y, x in [(0, 0), (0, 63), (63, 0), (63, 63)]:
        assert rotated_label[y, x] == augmentation.IGNORE_LABEL
        assert np.all(rotated_img[:, y, x] == 0)
    assert rotated_label[32, 32] == 5
    assert set(np.unique(rotated_label)) == {-1, 5}
    assert np.allclose(rotated_img[:, 32, 32], 200)


def test_rotation_by_zero_changes_nothing():
    img, label = _pair(np.random.RandomState(0), (40, 56))
    rotated_img, rotated_label = augmentation.rotate(img, label, 0.0)
    assert np.array_equal(rotated_label, label)
    assert np.allclose(rotated_img, img, atol=1e-3)


def test_label_values_are_never_interpolated():
    draws = np.random.default_rng(3)
    values = (0, 3, 7, 18, -1)
    transform = TrainTransform(IMAGENET_MEAN, CROP)
    rng = np.random.RandomState(0)
    seen = set()
    for size in [(64, 96), (37, 51), (150, 90)]:
        for _ in range(6):
            _, label = transform(_pair(rng, size, values), rng=draws)
            seen |= set(np.unique(label).tolist())
    assert seen <= set(values)
    assert seen >= {0, 3, 7}


def test_scale_resizes_label_with_nearest_only():
    img, label = _pair(np.random.RandomState(0), (30, 40), (0, 9, 150, -1))
    for factor in (0.5, 0.73, 1.37, 2.0):
        scaled_img, scaled_label = augmentation.scale(img, label, factor)
        assert scaled_img.shape == (3, int(30 * factor), int(40 * factor))
        assert scaled_label.shape == scaled_img.shape[1:]
        assert scaled_label.dtype == np.int32
        assert set(np.unique(scaled_label)) <= {0, 9, 150, -1}


def _interior(label, margin=2):
    """Pixels whose (2 margin + 1)^2 neighbourhood has one counted label."""
    h, w = label.shape
    padded = np.pad(label, margin, mode='edge')
    same = np.ones_like(label, dtype=bool)
    for dy in range(2 * margin + 1):
        for dx in range(2 * margin + 1):
            same &= padded[dy:dy + h, dx:dx + w] == label
    return same & (label >= 0)


def test_image_and_label_stay_aligned():
    # The image's red channel encodes the label (value * 20 + 40), so every
    # geometric step must move both alike, flips included. Away from class
    # borders (where bicubic sampling blends), they must agree. Upscaling
    # by up to 2 widens the blend beyond _interior's margin: over 1,200
    # seeded draws the agreement was at least 0.943 (a misaligned or
    # one-sided flip gives about 0.5).
    rng = np.random.RandomState(2)
    draws = np.random.default_rng(5)
    transform = TrainTransform(np.zeros((3, 1, 1), np.float32), CROP)
    for _ in range(16):
        _, label = _pair(rng, (80, 120), (0, 1, 2, 3, 4), block=16)
        img = np.zeros((3,) + label.shape, dtype=np.float32)
        img[0] = label * 20 + 40
        out_img, out_label = transform((img, label), rng=draws)
        inside = _interior(out_label)
        assert inside.sum() > 100
        agree = np.abs(out_img[0] - (out_label * 20 + 40)) < 10
        assert agree[inside].mean() > 0.93


def test_mean_is_subtracted():
    np.random.seed(0)
    img = np.full((3, 64, 64), 120, dtype=np.float32)
    label = np.zeros((64, 64), dtype=np.int32)
    mean = np.array([10, 20, 30], np.float32)[:, None, None]
    transform = TrainTransform(mean, CROP, scale_range=(1, 1), max_angle=0)
    out_img, out_label = transform((img, label))
    assert np.allclose(out_img[:, 10:-10, 10:-10],
                       np.array([110, 100, 90])[:, None, None], atol=1e-3)
    assert np.all(out_label == 0)


def test_flip_happens_about_half_of_the_time():
    label = np.zeros((64, 64), dtype=np.int32)
    label[:, :32] = 1
    img = np.zeros((3, 64, 64), dtype=np.float32)
    transform = TrainTransform(np.zeros((3, 1, 1), np.float32), CROP,
                               scale_range=(1, 1), max_angle=0)
    draws = np.random.default_rng(0)
    flipped = sum(transform((img, label), rng=draws)[1][0, 0] == 0
                  for _ in range(40))
    assert 8 < flipped < 32
