"""PSPNet's forward pass with the numpy kernels of this package.

The walk follows the link tree of :class:`pspnet.PSPNet` (the stem,
``res2`` to ``res5``, the pyramid pooling module and the head) and reads
every weight from it at call time.
"""

import contextlib
import threading
import weakref

import chainer.functions as F
import numpy as np

from pspnet.inference import blas
from pspnet.inference import buffers
from pspnet.inference import folding
from pspnet.inference import kernels
from pspnet.inference import winograd

#: Smallest input channel count for which a stride-1 3x3 convolution runs
#: by Winograd's algorithm (:mod:`pspnet.inference.winograd`), and its
#: output tile size: None chooses F(4x4) or F(6x6) per layer
#: (:func:`pspnet.inference.winograd.choose_tile`), 2, 4 or 6 forces one,
#: 0 none. Every stride-1 3x3 convolution of PSPNet (64 input channels or
#: more) is faster by Winograd than by the direct methods
#: (``python -m benchmarks.bench_winograd`` measures them).
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_TILE = None


def winograd_tile(in_channels, out_channels, ksize, stride, pad, dilate,
                  height, width):
    """The Winograd output tile size for a convolution on an (H, W) input,
    or None for the direct methods."""
    if ksize == 3 and stride == 1 and pad == dilate and \
            in_channels >= WINOGRAD_MIN_CHANNELS and \
            WINOGRAD_TILE != 0 and winograd.available():
        return WINOGRAD_TILE or winograd.choose_tile(
            height, width, dilate, in_channels, out_channels)
    return None


def _unsupported_conv(conv):
    W = conv.W.array
    if W is None:
        return 'uninitialized weights'
    if not isinstance(W, np.ndarray):
        return 'weights not on the CPU'
    if W.dtype != np.float32:
        return 'weights of dtype {}'.format(W.dtype)
    if getattr(conv, 'groups', 1) != 1:
        return 'grouped convolution'
    kh, kw = W.shape[2:]
    for name in ('stride', 'pad', 'dilate'):
        value = getattr(conv, name, 1)
        if isinstance(value, tuple) and value[0] != value[1]:
            return 'non-square {}'.format(name)
    if kh != kw:
        return 'non-square kernel'
    return None


def unsupported_reason(model, x):
    """Why the fast path cannot compute ``model`` on ``x``, or None.

    The fast path needs numpy (CPU) arrays, float32 weights and the link
    tree of :class:`pspnet.PSPNet` with ReLU or no activations. It is for
    inference: callers use it only when ``chainer.config.train`` is False.

    Args:
        model (pspnet.PSPNet): The model.
        x (numpy.ndarray or cupy.ndarray): (B, 3, H, W) input batch.

    Returns:
        str or None: A short reason, or None when the fast path applies.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        return 'input is not a float32 numpy array'
    try:
        links = model.conv_bn_links()
        head_conv2 = model.head_conv2
        ksizes = model.ppm.ksizes
    except AttributeError as e:
        return 'unexpected link tree ({})'.format(e)
    if len(ksizes) != len(model.ppm):
        return 'unexpected pyramid'
    for name, link in links:
        if link.activ not in (F.relu, None):
            return '{}: activation other than ReLU'.format(name)
        if name.endswith(('/conv3', '/residual_conv')) and \
                link.activ is not None:
            return '{}: activation before the residual addition'.format(name)
        reason = _unsupported_conv(link.conv)
        for attr in ('avg_mean', 'avg_var'):
            if not isinstance(getattr(link.bn, attr, None), np.ndarray):
                reason = reason or 'no CPU batch normalization statistics'
        if reason:
            return '{}: {}'.format(name, reason)
    reason = _unsupported_conv(head_conv2)
    if reason or head_conv2.W.shape[2:] != (1, 1):
        return 'head_conv2: {}'.format(reason or 'not 1x1')
    return None


def _geometry(conv):
    def first(value):
        return value[0] if isinstance(value, tuple) else value
    ksize = conv.W.shape[2]
    return (ksize, first(conv.stride), first(conv.pad),
            first(conv.dilate) if hasattr(conv, 'dilate') else 1)


def _shifted_upsampling(size, bins, ksize, pad, dilate):
    """``S_tap R`` of :meth:`_Forward.head` for every tap, stacked:
    (taps * bins, H * W) float32, rows ordered (tap, bin), where row
    ``(tap, bin)`` is the bilinear weight of ``bin`` at every output
    position shifted by the tap (zero where the tap falls outside)."""
    rows = []
    along = [kernels.bilinear_matrix(n, b) for n, b in zip(size, bins)]
    for i in range(ksize):
        for j in range(ksize):
            shifted = []
            for axis, offset in enumerate((i * dilate - pad,
                                           j * dilate - pad)):
                matrix = np.zeros_like(along[axis])
                n = size[axis]
                lo, hi = max(0, -offset), min(n, n - offset)
                if hi > lo:
                    matrix[lo:hi] = along[axis][lo + offset:hi + offset]
                shifted.append(matrix)
            # (H, bh) x (W, bw) -> (bh * bw, H * W)
            rows.append(np.einsum('yp,xq->pqyx', *shifted).reshape(
                bins[0] * bins[1], -1))
    return np.concatenate(rows)


class _Param(object):
    def __init__(self, array):
        self.array = array
        self.shape = array.shape
        self.size = array.size


class _InputChannels(object):
    """The first ``channels`` input channels of a convolution link, as the
    kernels read one (``W``, ``b``, geometry)."""

    def __init__(self, conv, channels):
        self.W = _Param(conv.W.array[:, :channels])
        self.b = getattr(conv, 'b', None)
        for name in ('stride', 'pad', 'dilate', 'groups'):
            if hasattr(conv, name):
                setattr(self, name, getattr(conv, name))


class _Forward(object):
    """One forward pass. Buffers come from a pool and go back to it as soon
    as the layers that read them are done."""

    def __init__(self, pool=None):
        self.pool = buffers.BufferPool() if pool is None else pool

    def feature_map(self, channels, batch, height, width):
        """A (channels + 1, B, H, W) pooled buffer with its ones channel."""
        x = self.pool.take((channels + 1, batch, height, width))
        x[channels] = 1
        return x

    def conv(self, conv, bn, activ, x, reuse=None, defer_relu=False,
             accumulate=False):
        """Convolution, folded batch normalization and activation.

        ``x`` is a (C_in + 1, B, H, W) feature map; returns a new feature
        map, or ``reuse`` when it has the right shape (its first C_out
        channels are overwritten, its last channel is left alone).

        ``defer_relu`` leaves the ReLU out, for the caller to apply.
        ``accumulate`` adds the convolution to what ``reuse`` holds (a
        residual connection) before the activation; ``reuse`` must then
        have the output's shape.
        """
        ksize, stride, pad, dilate = _geometry(conv)
        out_channels, in_channels = conv.W.shape[:2]
        _, batch, height, width = x.shape
        out_h = kernels.conv_out_size(height, ksize, stride, pad, dilate)
        out_w = kernels.conv_out_size(width, ksize, stride, pad, dilate)
        shape = (out_channels + 1, batch, out_h, out_w)
        if accumulate and (reuse is None or reuse.shape != shape):
            raise ValueError('conv: cannot accumulate into {}, the output '
                             'has shape {}'.format(
                                 None if reuse is None else reuse.shape,
                                 shape))
        relu = activ is not None and not defer_relu
        if accumulate and not (ksize == 1 and pad == 0):
            partial = self.conv(conv, bn, None, x)
            data = reuse[:out_channels]
            np.add(data, partial[:out_channels], out=data)
            self.pool.give(partial)
            out, relu_done = reuse, False
        else:
            out, relu_done = self._conv_into(conv, bn, x, reuse, shape,
                                             accumulate, relu)
        if relu and not relu_done:
            kernels.relu_(out[:out_channels])
        return out

    def _conv_into(self, conv, bn, x, reuse, shape, accumulate, relu):
        """The convolution and folded batch normalization of :meth:`conv`,
        written (or with ``accumulate``, added) to ``reuse`` or a new
        feature map of ``shape``. Returns it, and whether the ReLU that
        ``relu`` asks for was applied."""
        ksize, stride, pad, dilate = _geometry(conv)
        out_channels, in_channels = conv.W.shape[:2]
        if reuse is not None and reuse.shape == shape:
            out = reuse
        else:
            self.pool.give(reuse)
            out = self.feature_map(shape[0] - 1, *shape[1:])
        data = out[:out_channels]
        tile = None if accumulate else winograd_tile(
            in_channels, out_channels, ksize, stride, pad, dilate,
            *x.shape[2:])
        if tile:
            # The kernels fold the batch normalization into the filters.
            scale, bias = folding.scale_and_bias(conv, bn)
            winograd.conv3x3(x, conv.W.array, scale, bias, data, tile,
                             dilate, self.pool, relu)
            return out, relu
        # Folded weights go to a pooled buffer: no page faults. Taps carry
        # a bias column each.
        weights = self.pool.take((conv.W.size + out_channels * ksize * ksize,))
        if ksize == 1 and pad == 0:
            scratch = None if stride == 1 else self.pool.take(
                (in_channels + 1,) + shape[1:])
            kernels.conv1x1(x, folding.unfolded_matrix(conv, bn, weights),
                            data, stride, scratch, accumulate)
            self.pool.give(scratch)
        elif (stride == 1 and 2 * pad == dilate * (ksize - 1)
              and in_channels >= 2 * out_channels):
            products = self.pool.take(data.shape)
            matrices = folding.tap_matrices(conv, bn, weights)
            kernels.conv_per_tap(x, matrices.__getitem__, data, ksize, pad,
                                 dilate, products.reshape(-1))
            self.pool.give(products)
        else:
            columns = self.pool.take((kernels.unfolded_block_size(
                in_channels, ksize, *shape[2:])[1],))
            kernels.conv_unfolded(
                x, folding.unfolded_matrix(conv, bn, weights), data, ksize,
                stride, pad, dilate, columns)
            self.pool.give(columns)
        self.pool.give(weights)
        return out, False

    def conv_bn(self, link, x, reuse=None, defer_relu=False,
                accumulate=False):
        return self.conv(link.conv, link.bn, link.activ, x, reuse,
                         defer_relu, accumulate)

    def res_block(self, block, x, last_out=None):
        """A ResNet stage on ``x``, which it gives back to the pool. The
        last unit writes into ``last_out`` if given.

        Each unit's last convolution adds itself onto the shortcut in the
        GEMM: the shortcut's buffer (the unit's input, or the projection)
        becomes the unit's output.
        """
        units = block.units
        mid1 = mid2 = None
        for i, unit in enumerate(units):
            mid1 = self.conv_bn(unit.conv1, x, mid1)
            mid2 = self.conv_bn(unit.conv2, mid1, mid2)
            if unit.projection:
                shortcut = self.conv_bn(unit.residual_conv, x)
            else:
                shortcut = x
            channels = unit.conv3.conv.W.shape[0]
            if i == len(units) - 1 and last_out is not None:
                if last_out.shape != shortcut.shape:
                    raise ValueError('res_block: last_out has shape {}, not '
                                     '{}'.format(last_out.shape,
                                                 shortcut.shape))
                kernels.copy_(last_out[:channels], shortcut[:channels])
                if shortcut is not x:
                    self.pool.give(shortcut)
                shortcut = last_out
            out = self.conv_bn(unit.conv3, mid2, shortcut, defer_relu=True,
                               accumulate=True)
            kernels.relu_(out[:channels])
            if x is not out:
                self.pool.give(x)
            x = out
        self.pool.give(mid1, mid2)
        return x

    def __call__(self, model, x, out=None):
        """Logits of a (3 + 1, B, H, W) channel-major input, which goes
        back to the pool; returns (n_class, B, H, W) float32, ``out`` if
        given."""
        size = x.shape[2:]
        extractor = model.extractor
        h = x
        stem = extractor.stem
        for link in stem:
            h, previous = self.conv_bn(link, h,
                                       defer_relu=link is stem[-1]), h
            self.pool.give(previous)
        pooled_h, pooled_w = (-(-(s + 2 - 3) // 2) + 1 for s in h.shape[2:])
        scratch = self.pool.take(h.shape[:3] + (pooled_w,))
        pooled = kernels.max_pool_cover_all(
            h, 3, 2, 1, self.pool.take(h.shape[:2] + (pooled_h, pooled_w)),
            scratch)
        self.pool.give(h, scratch)
        h = pooled
        if stem[-1].activ is not None:
            # ReLU and max pooling commute: the ReLU runs on 4x fewer values.
            kernels.relu_(h[:-1])
        *stages, last_stage = extractor.stages
        for stage in stages:
            h = self.res_block(stage, h)
        res5_channels = last_stage.units[-1].conv3.conv.W.shape[0]
        _, batch, feat_h, feat_w = h.shape
        features = self.feature_map(res5_channels, batch, feat_h, feat_w)
        self.res_block(last_stage, h, features)
        branches = []
        for branch, pooled in zip(model.ppm, kernels.average_pool_pyramid(
                features[:res5_channels], model.ppm.ksizes)):
            pooled = np.concatenate(
                [pooled, np.ones((1,) + pooled.shape[1:], np.float32)])
            branches.append(self.conv_bn(branch, pooled))
        h = self.head(model.head_conv1, features, branches)
        self.pool.give(features)
        n_class = model.head_conv2.W.shape[0]
        logits = np.empty((n_class, batch, feat_h, feat_w), np.float32)
        kernels.conv1x1(h, folding.unfolded_matrix(model.head_conv2), logits)
        self.pool.give(h)
        return kernels.resize_bilinear(logits, size, out)

    def head(self, link, features, branches):
        """``link`` (the head's conv-BN-ReLU) on the concatenation of the
        last stage's ``features`` and the pyramid's ``branches`` upsampled
        to their size, without upsampling them.

        The convolution is linear in its input, and so is the bilinear
        upsampling of each branch (``R``, one matrix per axis): for the
        branches' part of the weights, ``conv(R y) = sum over taps of
        S_tap R (W_tap y)``, with ``S_tap`` the tap's shift (zeros past
        the edges). ``W_tap y`` is computed at the branches' few bins and
        the shifted upsampling ``S_tap R`` of all taps and branches is one
        GEMM of depth ``9 * sum(bins)`` (450 for PSPNet's 1, 2, 3 and 6)
        where the concatenation would cost a 3x3 convolution over their
        2048 channels. The features' part is a convolution of their own,
        added on (its bias and the batch normalization's shift with it).

        Args:
            link: Conv-BN-ReLU whose convolution takes the features'
                channels, then the branches', in that order.
            features (numpy.ndarray): (C + 1, B, H, W) feature map.
            branches (list of numpy.ndarray): (C_j + 1, B, h_j, w_j)
                feature maps of the branches (post-ReLU), given back to
                the pool here.

        Returns:
            numpy.ndarray: (C_out + 1, B, H, W) feature map.
        """
        conv = link.conv
        ksize, stride, pad, dilate = _geometry(conv)
        channels = features.shape[0] - 1
        out_channels = conv.W.shape[0]
        _, batch, height, width = features.shape
        if stride != 1 or 2 * pad != dilate * (ksize - 1):
            raise ValueError('head: the fast path needs a same-size '
                             'convolution')
        total = channels + sum(y.shape[0] - 1 for y in branches)
        if total != conv.W.shape[1]:
            raise ValueError('head: {} input channels, not {}'.format(
                conv.W.shape[1], total))
        scale, _ = folding.scale_and_bias(conv, link.bn)
        W = conv.W.array.reshape(out_channels, -1, ksize * ksize)
        # The same for every image of the batch.
        upsampling = np.concatenate([_shifted_upsampling(
            (height, width), y.shape[2:], ksize, pad, dilate)
            for y in branches])
        out = self.feature_map(out_channels, batch, height, width)
        for b in range(batch):
            weighed = []
            start = channels
            for y in branches:
                c = y.shape[0] - 1
                bins = y.shape[2] * y.shape[3]
                # (c * taps, taps * bins) with y's bins on the diagonal
                # blocks: W's rows of these channels times it give
                # W_tap y for every tap, ordered (tap, bin).
                spread = np.zeros((c, ksize * ksize, ksize * ksize, bins),
                                  np.float32)
                for t in range(ksize * ksize):
                    spread[:, t, t] = y[:c, b].reshape(c, bins)
                part = np.empty((out_channels, ksize * ksize * bins),
                                np.float32)
                blas.gemm(W[:, start:start + c].reshape(out_channels, -1),
                          spread.reshape(c * ksize * ksize, -1), part)
                weighed.append(part)
                start += c
            weighed = np.concatenate(weighed, axis=1)
            weighed *= scale[:, None]
            blas.gemm_columns(weighed, upsampling,
                              out[:out_channels, b].reshape(out_channels, -1))
        self.pool.give(*branches)
        return self.conv(_InputChannels(conv, channels), link.bn, link.activ,
                         features, out, accumulate=True)


#: Buffer pools kept between calls, one per model, so that repeated calls
#: (the windows and flips of ``predict``) write to memory that is already
#: mapped. A pool holds what one call needed at its peak.
_pools = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


@contextlib.contextmanager
def _forward_of(model):
    with _pools_lock:
        pool = _pools.pop(model, None)
    forward = _Forward(pool)
    try:
        yield forward
    finally:
        forward.pool.trim()
        with _pools_lock:
            _pools[model] = forward.pool


def release_buffers(model):
    """Free the work buffers the fast path keeps for ``model`` between
    calls (about 0.35 GB for PSPNetResNet101 at 713, batch 1)."""
    with _pools_lock:
        _pools.pop(model, None)


def _channel_major(forward, x):
    """(B, 3, H, W) -> pooled (3 + 1, B, H, W) feature map."""
    batch, channels, height, width = x.shape
    inputs = forward.feature_map(channels, batch, height, width)
    inputs[:channels] = x.transpose(1, 0, 2, 3)
    return inputs


def _image_view(array, i):
    """Image ``i`` of a (B, C, H, W) array as the (C, 1, H, W)
    channel-major view the forward pass writes to."""
    return array[i][:, None]


def fast_forward(model, x):
    """``model.forward(x)`` at inference, computed by the fast path.

    The images of a batch go through the network one at a time: a
    convolution's GEMMs are as large per image either way (8100 columns at
    713x713), and one image's work buffers stay in use, so a batch costs
    no more time or memory per image than a single image.

    Args:
        model (pspnet.PSPNet): A model on the CPU with float32 weights.
        x (numpy.ndarray): (B, 3, H, W) float32, mean-subtracted RGB.

    Returns:
        numpy.ndarray: (B, n_class, H, W) float32 logits, C-contiguous.
    """
    logits = np.empty((len(x), model.head_conv2.W.shape[0]) + x.shape[2:],
                      dtype=np.float32)
    with _forward_of(model) as forward:
        for i in range(len(x)):
            forward(model, _channel_major(forward, x[i:i + 1]),
                    _image_view(logits, i))
    return logits


def fast_network_scores(model, x, flip):
    """Softmax scores of a batch, averaged with those of the flipped
    batch when ``flip``, as :meth:`pspnet.PSPNet._network_scores`.

    Images and their mirror images are separate passes (see
    :func:`fast_forward`).

    Args:
        model (pspnet.PSPNet): A model on the CPU with float32 weights.
        x (numpy.ndarray): (B, 3, H, W) float32, mean-subtracted RGB.
        flip (bool): Average with the horizontally flipped batch.

    Returns:
        numpy.ndarray: (B, n_class, H, W) float32 probabilities,
        C-contiguous like Chainer's.
    """
    scores = np.empty((len(x), model.head_conv2.W.shape[0]) + x.shape[2:],
                      dtype=np.float32)
    with _forward_of(model) as forward:
        for i in range(len(x)):
            image_scores = kernels.softmax_(forward(
                model, _channel_major(forward, x[i:i + 1]),
                _image_view(scores, i)))
            if flip:
                mirrored = kernels.softmax_(forward(
                    model, _channel_major(forward, x[i:i + 1, :, :, ::-1]),
                    forward.pool.take(image_scores.shape)))
                kernels.mean_of_mirrored_(image_scores, mirrored)
                forward.pool.give(mirrored)
    return scores
