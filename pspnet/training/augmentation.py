"""Random geometric and photometric changes of training pairs, as in
ChainerCV's PSPNet training recipe, with OpenCV.

Images are (3, H, W) float32 RGB arrays, label maps (H, W) int32 arrays
whose -1 marks pixels the loss ignores. Labels are only ever moved with
nearest-neighbour sampling, so no value is interpolated.
"""

import cv2
import numpy as np

from pspnet import transforms

#: Label value of pixels without ground truth; the loss skips them.
IGNORE_LABEL = -1


def _as_label(label):
    # OpenCV's nearest sampling is exact on float32 for any integer
    # a label map holds (|id| < 2 ** 24), whatever the OpenCV build.
    return label.astype(np.float32)


def _from_label(label):
    return label.astype(np.int32)


def scale(img, label, factor):
    """Resize an image (bicubic) and its label map (nearest) by ``factor``.

    Args:
        img (numpy.ndarray): (3, H, W) float32.
        label (numpy.ndarray): (H, W) int32.
        factor (float): Scale; the new size is ``int(factor * H)`` by
            ``int(factor * W)``, at least 1 by 1.

    Returns:
        tuple: (3, h, w) float32 image and (h, w) int32 label map.
    """
    _, H, W = img.shape
    size = (max(int(factor * H), 1), max(int(factor * W), 1))
    img = transforms.resize(img, size, 'bicubic')
    label = transforms.resize(_as_label(label)[None], size, 'nearest')[0]
    return img, _from_label(label)


def _generator(rng):
    return np.random.default_rng() if rng is None else rng


def random_crop(img, label, crop_size, rng=None):
    """Cut the same random window out of an image and its label map.

    Args:
        img (numpy.ndarray): (3, H, W) float32.
        label (numpy.ndarray): (H, W) int32.
        crop_size (tuple of ints): (height, width) of the window, at most
            (H, W).
        rng (numpy.random.Generator or None): Where the window's corner
            is drawn from; None: a fresh unseeded generator.

    Returns:
        tuple: (3, height, width) image and (height, width) label map.
    """
    rng = _generator(rng)
    _, H, W = img.shape
    h, w = crop_size
    y = int(rng.integers(0, H - h + 1))
    x = int(rng.integers(0, W - w + 1))
    return img[:, y:y + h, x:x + w], label[y:y + h, x:x + w]


def rotate(img, label, angle):
    """Rotate an image and its label map about their centre, same size.

    Corners that come from outside the image are black in the image and
    :data:`IGNORE_LABEL` in the label map.

    Args:
        img (numpy.ndarray): (3, H, W) float32.
        label (numpy.ndarray): (H, W) int32.
        angle (float): Degrees, counter-clockwise.

    Returns:
        tuple: (3, H, W) float32 image (bilinear) and (H, W) int32 label
        map (nearest).
    """
    _, H, W = img.shape
    matrix = cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), angle, 1)
    img = cv2.warpAffine(
        np.ascontiguousarray(img.transpose(1, 2, 0)), matrix, (W, H),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0))
    label = cv2.warpAffine(
        _as_label(label), matrix, (W, H), flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE_LABEL)
    return img.transpose(2, 0, 1), _from_label(label)


class TrainTransform(object):
    """Turn a dataset pair into a training pair of fixed size.

    In order: random scale in ``scale_range`` (bicubic image, nearest
    label); a random ``crop_size`` window, or a random square of the shorter
    side when the scaled image is smaller than that; a random rotation in
    [-``max_angle``, ``max_angle``] degrees (ignored label in the corners);
    a resize up to ``crop_size`` when still smaller; a random horizontal
    flip; mean subtraction. Every random number comes from the generator
    passed with the pair (for training, the pair's own stream of
    :mod:`pspnet.training.randomness`), so the output is a function of the
    pair and that generator's seed, whichever process computes it.

    Args:
        mean (numpy.ndarray): (3, 1, 1) float32 mean subtracted last.
        crop_size (tuple of ints): (height, width) of the output.
        scale_range (tuple of floats): Bounds of the random scale.
        max_angle (float): Bound of the random rotation in degrees.

    Call:
        ``(img, label)``: (3, H, W) float32 RGB in [0, 255] and (H, W)
        int32 in [-1, n_class - 1]; ``rng`` (optional): a
        ``numpy.random.Generator`` (None: a fresh unseeded one). Returns
        (3, height, width) float32 mean-subtracted RGB and (height, width)
        int32 in [-1, n_class - 1].
    """

    def __init__(self, mean, crop_size, scale_range=(0.5, 2.0),
                 max_angle=10.0):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.crop_size = tuple(int(s) for s in crop_size)
        self.scale_range = tuple(scale_range)
        self.max_angle = float(max_angle)

    def __call__(self, in_data, rng=None):
        rng = _generator(rng)
        img, label = in_data
        img = np.asarray(img, dtype=np.float32)
        label = np.asarray(label, dtype=np.int32)
        img, label = scale(img, label, rng.uniform(*self.scale_range))

        _, H, W = img.shape
        if H < self.crop_size[0] or W < self.crop_size[1]:
            side = min(H, W)
            img, label = random_crop(img, label, (side, side), rng)
        else:
            img, label = random_crop(img, label, self.crop_size, rng)

        img, label = rotate(img, label, rng.uniform(
            -self.max_angle, self.max_angle))

        if img.shape[1:] != self.crop_size:
            img = transforms.resize(img, self.crop_size, 'bicubic')
            label = _from_label(transforms.resize(
                _as_label(label)[None], self.crop_size, 'nearest')[0])

        if rng.random() < 0.5:
            img = img[:, :, ::-1]
            label = label[:, ::-1]

        # Bicubic sampling overshoots a little; keep the documented range.
        img = np.clip(img, 0, 255) - self.mean
        return (np.ascontiguousarray(img, dtype=np.float32),
                np.ascontiguousarray(label, dtype=np.int32))
