"""Image geometry shared by inference and data loading (OpenCV based).

Images are CHW arrays; label maps are HW arrays.
"""

import math

import cv2
import numpy as np

_CV2_INTERPOLATION = {
    'nearest': cv2.INTER_NEAREST,
    'bilinear': cv2.INTER_LINEAR,
    'bicubic': cv2.INTER_CUBIC,
}


def resize(img, size, interpolation='bilinear'):
    """Resize a CHW image with OpenCV.

    Args:
        img (numpy.ndarray): (C, H, W) image, any float or integer dtype
            OpenCV accepts (float32 for images, int32 labels need
            ``'nearest'``).
        size (tuple of ints): Output (height, width).
        interpolation (str): ``'nearest'``, ``'bilinear'`` or ``'bicubic'``.

    Returns:
        numpy.ndarray: (C, height, width) array of the input dtype.
    """
    H, W = size
    out = cv2.resize(np.ascontiguousarray(img.transpose(1, 2, 0)), (W, H),
                     interpolation=_CV2_INTERPOLATION[interpolation])
    if out.ndim == 2:
        out = out[:, :, None]
    return out.transpose(2, 0, 1)


def resize_to_fit(img, size):
    """Shrink an image, keeping its aspect ratio, until it fits in ``size``.

    Images that already fit are returned unchanged (no upscaling).

    Args:
        img (numpy.ndarray): (C, H, W) float32 image.
        size (tuple of ints): (height, width) of the area to fit in.

    Returns:
        numpy.ndarray: (C, h, w) float32 with h <= height and w <= width.
    """
    _, H, W = img.shape
    scale = min(size[0] / H, size[1] / W, 1.0)
    if scale < 1:
        img = resize(img, (int(H * scale), int(W * scale)))
    return img


def sliding_windows(height, width, size, stride):
    """Top-left corners of the windows that cover an image.

    The windows form a grid of ``max(1, ceil((height - size) / stride) +
    1)`` rows (the same for columns) whose union is centred on the image,
    so the first corner may be negative: the part of a window outside the
    image is padding. Every pixel lies in at least one window, whatever
    the shape: a side shorter than the window gets one row (or column) of
    windows. (ChainerCV's formula, without the ``max``, gives no rows when
    a side is shorter than the window by more than the stride, and its
    scores are then 0 / 0.)

    Args:
        height, width (int): Image size.
        size (tuple of ints): Window (height, width).
        stride (tuple of ints): Vertical and horizontal step.

    Returns:
        list of (int, int): (y, x) corners, row by row.
    """
    def starts(length, window, step):
        n = max(1, int(math.ceil((length - window) / step)) + 1)
        first = -(window + step * (n - 1) - length) // 2
        return [first + i * step for i in range(n)]

    return [(y, x)
            for y in starts(height, size[0], stride[0])
            for x in starts(width, size[1], stride[1])]


def window_slices(corner, size, height, width):
    """Where a window and an image overlap.

    Args:
        corner (tuple of ints): Window's (y, x) top-left corner in the
            image, possibly negative.
        size (tuple of ints): Window (height, width).
        height, width (int): Image size.

    Returns:
        tuple: ``(image_slices, window_slices)``, each a (y, x) pair of
        slices, such that ``window[:, wy, wx]`` lies over
        ``image[:, iy, ix]``.
    """
    y, x = corner
    iy = slice(max(y, 0), min(y + size[0], height))
    ix = slice(max(x, 0), min(x + size[1], width))
    wy = slice(iy.start - y, iy.stop - y)
    wx = slice(ix.start - x, ix.stop - x)
    return (iy, ix), (wy, wx)
