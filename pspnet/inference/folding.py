"""Weight matrices with batch normalization folded in.

At inference, batch normalization is the affine map
``gamma * (y - avg_mean) / sqrt(avg_var + eps) + beta`` per channel, so a
convolution followed by it equals one convolution with scaled weights and
a bias. The bias becomes one more column of the weight matrix, which
multiplies the all-ones channel that every feature map of
:mod:`pspnet.inference.kernels` carries.

The matrices are computed from the links' current arrays at every call
(tens of milliseconds for PSPNetResNet101), never stored.
"""

import numpy as np

from pspnet.inference.threads import parallel_ranges


def _scale_and_shift(bn):
    """Per-channel ``scale`` and ``shift`` of a batch normalization at test
    time, float64 for an exact fold, each of shape (C,)."""
    var = bn.avg_var.astype(np.float64)
    scale = 1 / np.sqrt(var + bn.eps)
    if getattr(bn, 'gamma', None) is not None:
        scale = scale * bn.gamma.array
    shift = -bn.avg_mean * scale
    if getattr(bn, 'beta', None) is not None:
        shift = shift + bn.beta.array
    return scale, shift


def _conv_scale_and_bias(conv, bn):
    out_channels = conv.W.shape[0]
    if bn is None:
        scale = np.ones(out_channels)
        bias = np.zeros(out_channels)
    else:
        scale, bias = _scale_and_shift(bn)
    if getattr(conv, 'b', None) is not None:
        bias = bias + conv.b.array * scale
    return scale.astype(np.float32), bias.astype(np.float32)


def scale_and_bias(conv, bn=None):
    """Per-output-channel factor and bias of a convolution followed by
    ``bn`` (None for none), float32 arrays of shape (C_out,): the folded
    convolution is ``scale * conv(x, W) + bias``."""
    return _conv_scale_and_bias(conv, bn)


def _matrix(shape, out):
    if out is None:
        return np.empty(shape, dtype=np.float32)
    return out[:shape[0] * shape[1]].reshape(shape)


def unfolded_matrix(conv, bn=None, out=None):
    """The weight matrix of a convolution on unfolded (im2col) columns.

    Args:
        conv (chainer.links.Convolution2D): Weight ``W`` of shape
            (C_out, C_in, kh, kw), optional bias ``b``.
        bn (chainer.links.BatchNormalization or None): The normalization
            that follows ``conv``, folded in; None for none.
        out (numpy.ndarray or None): A one-dimensional float32 buffer to
            hold the matrix (big enough), or None for a new array.

    Returns:
        numpy.ndarray: (C_out, C_in * kh * kw + 1) float32. Column
        ``c * kh * kw + i * kw + j`` weighs input channel ``c`` at kernel
        tap (i, j); the last column is the bias.
    """
    W = conv.W.array
    out_channels = W.shape[0]
    scale, bias = _conv_scale_and_bias(conv, bn)
    matrix = _matrix((out_channels, W[0].size + 1), out)
    W = W.reshape(out_channels, -1)

    def fold(start, stop):
        np.multiply(W[start:stop], scale[start:stop, None],
                    out=matrix[start:stop, :-1])

    parallel_ranges(fold, out_channels)
    matrix[:, -1] = bias
    return matrix


#: Output channels folded together by :func:`tap_matrices`: their weights
#: (a few megabytes) stay in cache while the taps are gathered.
_TAP_BLOCK = 8


def tap_matrices(conv, bn=None, out=None):
    """The weight matrices of every kernel tap, in one pass over ``W``.

    Args:
        conv (chainer.links.Convolution2D): Weight of shape
            (C_out, C_in, kh, kw), optional bias ``b``.
        bn (chainer.links.BatchNormalization or None): Folded in if given.
        out (numpy.ndarray or None): A one-dimensional float32 buffer to
            hold the matrices, or None for a new array.

    Returns:
        numpy.ndarray: (kh * kw, C_out, C_in + 1) float32; entry ``t`` is
        the (C_out, C_in + 1) matrix of tap ``t`` (kernel position
        ``(t // kw, t % kw)``); the last column is the bias at the centre
        tap and zeros elsewhere, so that the taps add up to the
        convolution.
    """
    W = conv.W.array
    out_channels, in_channels, kh, kw = W.shape
    scale, bias = _conv_scale_and_bias(conv, bn)
    size = kh * kw * out_channels * (in_channels + 1)
    matrices = (np.empty(size, dtype=np.float32) if out is None
                else out[:size]).reshape(kh, kw, out_channels,
                                         in_channels + 1)

    def fold(start, stop):
        for o in range(start, stop, _TAP_BLOCK):
            p = slice(o, min(stop, o + _TAP_BLOCK))
            np.multiply(W[p].transpose(2, 3, 0, 1), scale[p, None],
                        out=matrices[:, :, p, :-1])

    parallel_ranges(fold, out_channels)
    matrices[:, :, :, -1] = 0
    matrices[kh // 2, kw // 2, :, -1] = bias
    return matrices.reshape(kh * kw, out_channels, in_channels + 1)
