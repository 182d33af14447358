"""Segmenting whole images of any size with a fixed-size network: the
canvas or sliding windows, several scales, and the average of their scores.

These functions take the network as a callable, so that the link
(:meth:`pspnet.PSPNet.predict`) and other runtimes of the same network
(an ONNX export) predict with exactly the same windows.

Images are (3, H, W) float32 RGB arrays in [0, 255].
"""

import math

import chainer
import chainer.functions as F
import numpy as np

from pspnet import transforms


def window_stride(input_size):
    """The step between sliding windows: 2/3 of the input size (rounded
    up), as in ChainerCV, so neighbouring windows overlap by a third."""
    return tuple(int(math.ceil(s * 2 / 3)) for s in input_size)


def uses_windows(shape, input_size):
    """Whether an image of ``shape`` (H, W) is covered by sliding windows
    (its long side exceeds the input size) rather than placed on one
    input-size canvas (shrunk to fit if needed)."""
    return max(shape) > max(input_size)


def scaled_shape(shape, scale):
    """(H, W) of an image scaled by ``scale``, at least 1 x 1."""
    return tuple(max(1, int(s * scale)) for s in shape)


def network_calls(shape, input_size, scales=None):
    """How many windows (network inputs) segmenting an image of ``shape``
    takes: one per window, or one canvas, per scale."""
    total = 0
    for scale in scales or (1.0,):
        size = scaled_shape(shape, scale)
        if uses_windows(size, input_size):
            total += len(transforms.sliding_windows(
                size[0], size[1], input_size, window_stride(input_size)))
        else:
            total += 1
    return total


def flip_averaged(softmax_scores, x, xp=np):
    """Scores of a batch averaged with those of its horizontal flip, in
    one call of the network.

    Args:
        softmax_scores (callable): Maps a (2B, 3, h, w) float32 batch to
            its (2B, n_class, h, w) float32 softmax scores.
        x: (B, 3, h, w) float32 ``xp`` array.
        xp: numpy or cupy.

    Returns:
        (B, n_class, h, w) float32 ``xp`` array.
    """
    scores = softmax_scores(xp.concatenate([x, x[:, :, :, ::-1]]))
    n = len(x)
    return (scores[:n] + scores[n:, :, :, ::-1]) / 2


def single_scale_scores(network_scores, img, input_size, n_class, mean,
                        xp=np, progress=None):
    """Class probabilities of one image at its own scale.

    Images whose long side exceeds the input size are covered by
    overlapping windows (:func:`pspnet.transforms.sliding_windows`, every
    pixel in at least one window), whose scores are averaged where they
    overlap; smaller images are shrunk to fit if needed and centred on an
    input-size canvas, whose scores are resized back. Padding is zeros
    after mean subtraction.

    Args:
        network_scores (callable): Maps a (1, 3, h, w) float32
            mean-subtracted batch (``xp`` array, h, w the input size) to
            its (1, n_class, h, w) float32 softmax scores, or to an
            iterator of such arrays whose mean is the scores (e.g. the
            image's and its flip's): each is added before the next is
            computed, so that one of them is held at a time.
        img (numpy.ndarray): (3, H, W) float32 RGB in [0, 255].
        input_size (tuple of ints): (h, w) of the network input.
        n_class (int): Number of classes.
        mean (numpy.ndarray): (3, 1, 1) float32 mean.
        xp: numpy or cupy, where ``network_scores`` computes.
        progress (callable or None): Called with no arguments after each
            network call.

    Returns:
        (n_class, H, W) float32 ``xp`` array of probabilities.
    """
    H, W = img.shape[1:]
    size = tuple(input_size)
    if uses_windows((H, W), size):
        total = xp.empty((n_class, H, W), dtype=np.float32)
        for x0, x1, band in window_bands(network_scores, img, size, n_class,
                                         mean, xp, progress):
            total[:, :, x0:x1] = band
        return total
    fitted = transforms.resize_to_fit(img - mean, size)
    h, w = fitted.shape[1:]
    y0, x0 = (size[0] - h) // 2, (size[1] - w) // 2
    canvas = xp.zeros((1, 3) + size, dtype=np.float32)
    canvas[0, :, y0:y0 + h, x0:x0 + w] = xp.asarray(fitted)
    scores, n = None, 0
    for part in _parts(network_scores(canvas)):
        part = part[:, :, y0:y0 + h, x0:x0 + w]
        scores = part if scores is None else scores + part
        n += 1
        del part
    if n > 1:
        scores /= n
    if progress is not None:
        progress()
    if (h, w) != (H, W):
        scores = F.resize_images(scores, (H, W)).array
    return scores[0]


def window_bands(network_scores, img, input_size, n_class, mean, xp=np,
                 progress=None):
    """The averaged scores of the sliding windows of an image, band of
    columns by band of columns, left to right, each as soon as no later
    window reaches it.

    The windows are visited column of windows by column of windows (top
    to bottom in each), and their scores added in that order; only the
    columns that a window of the current column of windows still reaches
    are held, at most the input width, where the scores of the whole image
    would be n_class x H x W.

    Args:
        network_scores, n_class, mean, xp, progress: See
            :func:`single_scale_scores`.
        img (numpy.ndarray): (3, H, W) float32 RGB in [0, 255], covered by
            windows (:func:`uses_windows`).
        input_size (tuple of ints): (h, w) of the network input.

    Yields:
        tuple: ``(x0, x1, scores)``: the image's columns ``x0:x1`` and
        their (n_class, H, x1 - x0) float32 ``xp`` probabilities, a view
        that the next band overwrites; the bands cover ``0:W`` in order.
    """
    H, W = img.shape[1:]
    size = tuple(input_size)
    columns = {}
    for corner in transforms.sliding_windows(H, W, size, window_stride(size)):
        columns.setdefault(corner[1], []).append(corner)
    starts = sorted(columns)
    # The columns held: from ``lo`` (the first not yet given) to at most
    # the right edge of the current column of windows.
    width = min(W, size[1])
    total = xp.zeros((n_class, H, width), dtype=np.float32)
    count = xp.zeros((1, H, width), dtype=np.float32)
    lo = 0
    for j, start in enumerate(starts):
        for corner in columns[start]:
            (iy, ix), (wy, wx) = transforms.window_slices(corner, size, H, W)
            held = slice(ix.start - lo, ix.stop - lo)
            window = xp.zeros((1, 3) + size, dtype=np.float32)
            # The mean is subtracted window by window: no second copy of
            # a large image.
            window[0, :, wy, wx] = xp.asarray(img[:, iy, ix] - mean)
            for part in _parts(network_scores(window)):
                total[:, iy, held] += part[0, :, wy, wx]
                count[:, iy, held] += 1
                del part
            if progress is not None:
                progress()
        # No later window reaches the columns left of the next start.
        end = W if j + 1 == len(starts) else max(lo, starts[j + 1])
        n = end - lo
        if n == 0:
            continue
        band = total[:, :, :n]
        band /= count[:, :, :n]
        yield lo, end, band
        # The columns still open move to the front, one class at a time
        # (a copy of one class's columns at most).
        keep = width - n
        for c in range(n_class):
            total[c, :, :keep] = total[c, :, n:].copy()
        total[:, :, keep:] = 0
        count[:, :, :keep] = count[:, :, n:].copy()
        count[:, :, keep:] = 0
        lo = end


def _parts(scores):
    """The arrays of what a ``network_scores`` returned: one array, or
    the arrays of an iterator."""
    return (scores,) if hasattr(scores, 'shape') else scores


def labels_of(scores):
    """The labels of class scores, as ``scores.argmax(axis=0)`` gives
    them (the first class among equal scores), without the transposed
    copy of the scores that numpy's argmax over the first axis makes.

    Args:
        scores (numpy.ndarray): (n_class, H, W) float32.

    Returns:
        numpy.ndarray: (H, W) int32 class ids.
    """
    best = scores[0].copy()
    labels = np.zeros(best.shape, dtype=np.int32)
    for c in range(1, len(scores)):
        better = scores[c] > best
        labels[better] = c
        np.maximum(best, scores[c], out=best)
    return labels


def _checked_image(img):
    img = np.asarray(chainer.backends.cuda.to_cpu(img), dtype=np.float32)
    if img.ndim != 3 or img.shape[0] != 3 or 0 in img.shape:
        raise ValueError('expected a (3, H, W) image, got shape {}'
                         .format(img.shape))
    return img


def _counting(progress, shape, input_size, scales):
    """``progress(done, total)`` as the no-argument call of each network
    call (None stays None)."""
    if progress is None:
        return None
    total = network_calls(shape, input_size, scales)
    done = [0]

    def step():
        done[0] += 1
        progress(done[0], total)
    return step


def predict_scores(network_scores, img, input_size, n_class, mean,
                   scales=None, xp=np, progress=None):
    """Class probabilities of one image, averaged over ``scales``.

    Args:
        network_scores, input_size, n_class, mean, xp: See
            :func:`single_scale_scores`.
        img (numpy.ndarray): (3, H, W) RGB, values in [0, 255].
        scales (sequence of floats or None): The image is scaled by each
            (bilinear), segmented, and the scores resized back and averaged;
            None or empty segments it at its own scale only.
        progress (callable or None): ``progress(done, total)`` after each
            network call, ``total`` being :func:`network_calls`.

    Returns:
        (n_class, H, W) float32 ``xp`` array of probabilities.
    """
    img = _checked_image(img)
    H, W = img.shape[1:]
    kwargs = dict(xp=xp, progress=_counting(progress, (H, W), input_size,
                                            scales))
    if not scales:
        return single_scale_scores(network_scores, img, input_size, n_class,
                                   mean, **kwargs)
    result = None
    for scale in scales:
        size = scaled_shape((H, W), scale)
        scaled = img if size == (H, W) else transforms.resize(img, size)
        scores = single_scale_scores(network_scores, scaled, input_size,
                                     n_class, mean, **kwargs)
        if size != (H, W):
            scores = F.resize_images(scores[None], (H, W)).array[0]
        result = scores if result is None else result + scores
    return result / len(scales)


def _labels(scores, xp):
    if xp is np:
        return labels_of(scores)
    return chainer.backends.cuda.to_cpu(scores.argmax(axis=0).astype(
        np.int32))


def predict_labels(network_scores, img, input_size, n_class, mean,
                   scales=None, xp=np, progress=None):
    """The labels of one image: those of :func:`predict_scores`, exactly
    (the first class among equal scores), without holding the scores of
    the whole image where it can: an image covered by windows at its own
    scale is labelled band by band as its windows are done
    (:func:`window_bands`), holding the scores of at most the input width
    of its columns.

    Args:
        network_scores, img, input_size, n_class, mean, scales, xp,
        progress: See :func:`predict_scores`.

    Returns:
        numpy.ndarray: (H, W) int32 labels in [0, n_class).
    """
    img = _checked_image(img)
    H, W = img.shape[1:]
    if scales or not uses_windows((H, W), input_size):
        return _labels(predict_scores(network_scores, img, input_size,
                                      n_class, mean, scales, xp, progress),
                       xp)
    labels = np.empty((H, W), dtype=np.int32)
    for x0, x1, band in window_bands(
            network_scores, img, input_size, n_class, mean, xp,
            _counting(progress, (H, W), input_size, None)):
        labels[:, x0:x1] = _labels(band, xp)
    return labels
