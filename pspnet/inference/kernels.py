"""Numpy kernels of the fast inference path, on channel-major arrays.

Feature maps are (C + 1, B, H, W) float32 arrays whose last channel is all
ones: reshaped to (C + 1, B * H * W), a 1x1 convolution is one GEMM with
the (C_out, C + 1) matrices of :mod:`pspnet.inference.folding`, the bias
included. Kernels write into given output arrays so that buffers can be
reused; every ``out`` is a C-contiguous array or a leading-channel slice
of one.
"""

import numpy as np

from pspnet.inference.blas import gemm
from pspnet.inference.blas import gemm_columns
from pspnet.inference.blas import gemm_many
from pspnet.inference.threads import parallel_ranges

#: Bytes of the column buffer that 3x3 convolutions unfold rows into. Big
#: enough for efficient GEMMs, small enough to stay mostly in cache.
COLUMN_BUFFER_BYTES = 8 << 20


def unfolded_block_size(in_channels, ksize, out_h, out_w):
    """Output rows per block of :func:`conv_unfolded` and the column buffer
    floats they need.

    Blocks fill :data:`COLUMN_BUFFER_BYTES`, but are at least 3/8 as many
    columns wide as the GEMM is deep (K = C_in * k * k + 1): BLAS packs
    the (C_out, K) weight matrix anew for every block, a cost that narrow
    blocks of a deep GEMM (res5's K = 4609) no longer hide.

    Returns:
        tuple of ints: ``(rows_per_block, floats)``.
    """
    depth = in_channels * ksize * ksize + 1
    columns = max(COLUMN_BUFFER_BYTES // 4 // depth, depth * 3 // 8)
    rows = max(1, min(out_h, columns // out_w))
    return rows, depth * out_w * rows


def relu_(x):
    """ReLU in place, in parallel threads; returns ``x``."""
    def work(start, stop):
        np.maximum(x[start:stop], 0, out=x[start:stop])
    parallel_ranges(work, len(x))
    return x


def copy_(dst, src):
    """``dst[...] = src`` in parallel threads; returns ``dst``."""
    def work(start, stop):
        dst[start:stop] = src[start:stop]
    parallel_ranges(work, len(dst))
    return dst


def conv_out_size(size, ksize, stride, pad, dilate):
    """Output length of a convolution along one axis (Chainer's formula
    without ``cover_all``)."""
    return (size + 2 * pad - dilate * (ksize - 1) - 1) // stride + 1


def conv1x1(x, matrix, out, stride=1, scratch=None, accumulate=False):
    """A 1x1 convolution as one GEMM.

    Args:
        x (numpy.ndarray): (C_in + 1, B, H, W) feature map.
        matrix (numpy.ndarray): (C_out, C_in + 1) float32, bias last.
        out (numpy.ndarray): (C_out, B, h, w) float32 output, C-contiguous,
            with h = ceil(H / stride), w = ceil(W / stride).
        stride (int): Stride; subsampled inputs are copied first.
        scratch (numpy.ndarray or None): (C_in + 1, B, h, w) float32 array
            for the subsampled input when ``stride > 1``.
        accumulate (bool): Add the convolution to ``out`` (a residual
            connection already there) instead of overwriting it.
    """
    if stride != 1:
        sub = x[:, :, ::stride, ::stride]
        if scratch is None:
            scratch = np.empty(sub.shape, dtype=np.float32)
        scratch[...] = sub
        x = scratch
    gemm_columns(matrix, x.reshape(x.shape[0], -1),
                 out.reshape(out.shape[0], -1),
                 beta=1.0 if accumulate else 0.0)


def _valid_range(in_size, out_size, offset, stride):
    """Outputs ``o`` with ``0 <= o * stride + offset < in_size``, as
    ``(first, stop)``."""
    first = max(0, -(offset // stride))
    stop = min(out_size, (in_size - 1 - offset) // stride + 1)
    return first, max(first, stop)


def conv_unfolded(x, matrix, out, ksize, stride, pad, dilate, column_buffer):
    """A kxk convolution that unfolds blocks of output rows, then runs one
    GEMM per block.

    Args:
        x (numpy.ndarray): (C_in + 1, B, H, W) feature map.
        matrix (numpy.ndarray): (C_out, C_in * k * k + 1) float32 from
            :func:`pspnet.inference.folding.unfolded_matrix`.
        out (numpy.ndarray): (C_out, B, h, w) float32 output, C-contiguous,
            with Chainer's output size (``cover_all=False``).
        ksize, stride, pad, dilate (int): Square kernel geometry.
        column_buffer (numpy.ndarray or None): 1-d float32 scratch of the
            size :func:`unfolded_block_size` gives; blocks of rows are
            sized to fit it (one row at least, with a bigger buffer if
            needed). None allocates one.
    """
    in_channels = x.shape[0] - 1
    _, batch, height, width = x.shape
    out_channels, _, out_h, out_w = out.shape
    n_rows = in_channels * ksize * ksize
    if column_buffer is None:
        column_buffer = np.empty(
            unfolded_block_size(in_channels, ksize, out_h, out_w)[1],
            dtype=np.float32)
    rows_per_block = max(1, min(
        out_h, column_buffer.size // ((n_rows + 1) * out_w)))
    if column_buffer.size < (n_rows + 1) * out_w * rows_per_block:
        column_buffer = np.empty((n_rows + 1) * out_w * rows_per_block,
                                 dtype=np.float32)
    out2d = out.reshape(out_channels, -1)
    taps = []
    for i in range(ksize):
        oy = i * dilate - pad
        y_range = _valid_range(height, out_h, oy, stride)
        for j in range(ksize):
            ox = j * dilate - pad
            taps.append((oy, y_range, ox,
                         _valid_range(width, out_w, ox, stride)))
    for b in range(batch):
        for r0 in range(0, out_h, rows_per_block):
            r1 = min(out_h, r0 + rows_per_block)
            n = r1 - r0
            columns = column_buffer[:(n_rows + 1) * n * out_w].reshape(
                n_rows + 1, n * out_w)
            columns[n_rows] = 1
            unfolded = columns[:n_rows].reshape(
                in_channels, ksize * ksize, n, out_w)

            def unfold(c0, c1, b=b, r0=r0, r1=r1, n=n, unfolded=unfolded):
                for t, (oy, (y0, y1), ox, (x0, x1)) in enumerate(taps):
                    dst = unfolded[c0:c1, t]
                    y0, y1 = max(y0, r0) - r0, max(min(y1, r1), r0) - r0
                    if y0 > 0:
                        dst[:, :y0] = 0
                    if y1 < n:
                        dst[:, y1:] = 0
                    if y1 <= y0:
                        continue
                    if x0 > 0:
                        dst[:, y0:y1, :x0] = 0
                    if x1 < out_w:
                        dst[:, y0:y1, x1:] = 0
                    if x1 <= x0:
                        continue
                    iy = (r0 + y0) * stride + oy
                    ix = x0 * stride + ox
                    # A copy, not a ufunc: row by row, numpy copies several
                    # times faster than it runs a ufunc.
                    dst[:, y0:y1, x0:x1] = x[
                        c0:c1, b,
                        iy:iy + (y1 - y0 - 1) * stride + 1:stride,
                        ix:ix + (x1 - x0 - 1) * stride + 1:stride]

            parallel_ranges(unfold, in_channels)
            start = (b * out_h + r0) * out_w
            gemm(matrix, columns, out2d[:, start:start + n * out_w])


def conv_per_tap(x, tap_matrix, out, ksize, pad, dilate, scratch=None):
    """A stride-1 kxk convolution as one GEMM per tap on the whole input,
    each product added to the output shifted. It beats unfolding when the
    input has many more channels than the output.

    Args:
        x (numpy.ndarray): (C_in + 1, B, H, W) feature map.
        tap_matrix (callable): ``tap_matrix(i * k + j)`` gives the
            (C_out, C_in + 1) float32 matrix of kernel tap (i, j), such as
            the ``__getitem__`` of
            :func:`pspnet.inference.folding.tap_matrices`' result.
        out (numpy.ndarray): (C_out, B, H, W) float32, C-contiguous.
        ksize, pad, dilate (int): Kernel geometry with
            ``2 * pad == dilate * (ksize - 1)`` (same size output).
        scratch (numpy.ndarray or None): (C_out * B * H * W,) float32
            buffer for the per-tap products.
    """
    if 2 * pad != dilate * (ksize - 1):
        raise ValueError('conv_per_tap needs a same-size convolution')
    _, batch, height, width = x.shape
    out_channels = out.shape[0]
    x2d = x.reshape(x.shape[0], -1)
    center = (ksize // 2) * ksize + ksize // 2
    gemm(tap_matrix(center), x2d, out.reshape(out_channels, -1))
    if scratch is None:
        scratch = np.empty(out.size, dtype=np.float32)
    product = scratch[:out.size].reshape(out.shape)
    for t in range(ksize * ksize):
        if t == center:
            continue
        dy = (t // ksize) * dilate - pad
        dx = (t % ksize) * dilate - pad
        ys = slice(max(0, -dy), min(height, height - dy))
        xs = slice(max(0, -dx), min(width, width - dx))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            continue
        gemm(tap_matrix(t), x2d, product.reshape(out_channels, -1))
        shifted = product[:, :, ys.start + dy:ys.stop + dy,
                          xs.start + dx:xs.stop + dx]

        def add(start, stop, ys=ys, xs=xs, shifted=shifted):
            target = out[start:stop, :, ys, xs]
            np.add(target, shifted[start:stop], out=target)

        parallel_ranges(add, out_channels)


def max_pool_cover_all(x, ksize, stride, pad, out=None, scratch=None):
    """Max pooling as ``chainer.functions.max_pooling_2d`` computes it with
    its default ``cover_all=True``: the last window may overhang, and
    positions outside the input never win.

    Args:
        x (numpy.ndarray): (C, B, H, W) float32 (a feature map's ones
            channel stays ones).
        ksize, stride, pad (int): Square window geometry.
        out (numpy.ndarray or None): (C, B, h, w) float32 for the result.
        scratch (numpy.ndarray or None): (C, B, H, w) float32 for the
            maxima over columns.

    Returns:
        numpy.ndarray: (C, B, h, w) float32 with
        h = ceil((H + 2 pad - ksize) / stride) + 1, likewise w; ``out`` if
        given.
    """
    C, B, H, W = x.shape

    def pooled_size(size):
        return -(-(size + 2 * pad - ksize) // stride) + 1

    out_h, out_w = pooled_size(H), pooled_size(W)
    if out is None:
        out = np.empty((C, B, out_h, out_w), dtype=np.float32)
    if scratch is None:
        scratch = np.empty((C, B, H, out_w), dtype=np.float32)

    def pool(c0, c1):
        # Separable: the max over columns, then over rows.
        cols = scratch[c0:c1]
        cols[...] = -np.inf
        for j in range(ksize):
            x0, x1 = _valid_range(W, out_w, j - pad, stride)
            if x1 > x0:
                ix = x0 * stride + j - pad
                dst = cols[:, :, :, x0:x1]
                np.maximum(dst, x[c0:c1, :, :, ix:ix + (x1 - x0 - 1) * stride
                                  + 1:stride], out=dst)
        rows = out[c0:c1]
        rows[:] = -np.inf
        for i in range(ksize):
            y0, y1 = _valid_range(H, out_h, i - pad, stride)
            if y1 > y0:
                iy = y0 * stride + i - pad
                dst = rows[:, :, y0:y1]
                np.maximum(dst, cols[:, :, iy:iy + (y1 - y0 - 1) * stride
                                     + 1:stride], out=dst)

    parallel_ranges(pool, C)
    return out


def average_pool_grid(x, ksize):
    """Non-overlapping average pooling (stride = window, no padding) as a
    reshape and a mean, like ``chainer.functions.average_pooling_2d(x,
    ksize, ksize)``: rows and columns past the last whole window are
    dropped.

    Args:
        x (numpy.ndarray): (C, B, H, W) float32.
        ksize (tuple of ints): (kh, kw) window.

    Returns:
        numpy.ndarray: (C, B, H // kh, W // kw) float32.
    """
    C, B, H, W = x.shape
    kh, kw = ksize
    oh, ow = H // kh, W // kw
    out = np.empty((C, B, oh, ow), dtype=np.float32)

    def work(c0, c1):
        rows = x[c0:c1, :, :oh * kh, :ow * kw].reshape(
            c1 - c0, B, oh, kh, ow * kw).sum(axis=3, dtype=np.float32)
        np.sum(rows.reshape(c1 - c0, B, oh, ow, kw), axis=4,
               dtype=np.float32, out=out[c0:c1])
        out[c0:c1] *= np.float32(1.0 / (kh * kw))

    parallel_ranges(work, C)
    return out


def average_pool_pyramid(x, ksizes):
    """:func:`average_pool_grid` of ``x`` for each window size, coarse
    grids from finer ones where their windows are whole multiples of a
    finer window (PSPNet's bins 1, 2, 3 and 6 at 713 or 473: every grid
    from the 6x6 one), so that ``x`` is read once instead of once per grid.
    The means are the same, summed in another order.

    Args:
        x (numpy.ndarray): (C, B, H, W) float32.
        ksizes (list of tuples of ints): (kh, kw) windows.

    Returns:
        list of numpy.ndarray: (C, B, H // kh, W // kw) float32 per
        window, in the order of ``ksizes``.
    """
    H, W = x.shape[2:]
    done = {}
    for kh, kw in sorted(set(map(tuple, ksizes))):
        oh, ow = H // kh, W // kw
        source = None
        for (fh, fw), fine in done.items():
            # The coarse grid's windows are fh x fw blocks of fine ones,
            # all inside the fine grid.
            if kh % fh == 0 and kw % fw == 0 and \
                    oh * (kh // fh) <= fine.shape[2] and \
                    ow * (kw // fw) <= fine.shape[3]:
                source = (fine, (kh // fh, kw // fw))
                break
        if source is None:
            done[(kh, kw)] = average_pool_grid(x, (kh, kw))
        else:
            done[(kh, kw)] = average_pool_grid(*source)
    return [done[tuple(k)] for k in ksizes]


def bilinear_matrix(out_size, in_size):
    """Interpolation matrix of ``chainer.functions.resize_images`` along one
    axis (bilinear, ``align_corners=True``).

    Returns:
        numpy.ndarray: (out_size, in_size) float32 whose rows hold the two
        weights of each output position.
    """
    coords = np.linspace(0, in_size - 1, num=out_size)
    frac, first = np.modf(coords)
    first = first.astype(np.intp)
    second = np.minimum(first + 1, in_size - 1)
    frac = frac.astype(np.float32)
    matrix = np.zeros((out_size, in_size), dtype=np.float32)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, first), 1 - frac)
    np.add.at(matrix, (rows, second), frac)
    return matrix


#: Input planes up to this many pixels are resized by one GEMM with the
#: Kronecker product of the two axes' interpolation matrices.
_KRONECKER_PIXELS = 64


def resize_bilinear(x, size, out=None):
    """Bilinear resize of every (H, W) plane, as matrix products (one
    with the Kronecker product of both axes' interpolation matrices for
    small planes such as the pyramid's bins, else one per axis).

    Args:
        x (numpy.ndarray): (C, B, H, W) float32.
        size (tuple of ints): Output (height, width).
        out (numpy.ndarray or None): (C, B, height, width) float32,
            C-contiguous.

    Returns:
        numpy.ndarray: (C, B, height, width) float32, ``out`` if given.
    """
    C, B, H, W = x.shape
    height, width = size
    if out is None:
        out = np.empty((C, B, height, width), dtype=np.float32)
    elif not out.flags.c_contiguous:
        raise ValueError('resize_bilinear: out must be C-contiguous')
    planes = np.ascontiguousarray(x).reshape(C * B, H * W)
    if H * W <= _KRONECKER_PIXELS:
        interpolation = np.kron(bilinear_matrix(height, H).T,
                                bilinear_matrix(width, W).T)
        gemm(planes, interpolation, out.reshape(C * B, height * width))
        return out
    along_x = np.empty((C * B * H, width), dtype=np.float32)
    gemm(planes.reshape(C * B * H, W),
         np.ascontiguousarray(bilinear_matrix(width, W).T), along_x)
    along_y = bilinear_matrix(height, H)
    along_x = along_x.reshape(C * B, H, width)
    out_planes = out.reshape(C * B, height, width)
    # One single-threaded GEMM per plane, the planes spread over the
    # threads: each is too small to share.
    gemm_many([(along_y, along_x[i], out_planes[i], 0.0)
               for i in range(C * B)])
    return out


def softmax_(x):
    """Softmax over the first axis, in place, like
    ``chainer.functions.softmax`` over the class axis.

    Args:
        x (numpy.ndarray): (C, B, H, W) float32 scores.

    Returns:
        numpy.ndarray: ``x``, now probabilities.
    """
    def work(start, stop):
        part = x[:, :, start:stop]
        part -= part.max(axis=0)
        np.exp(part, out=part)
        part /= part.sum(axis=0)
    parallel_ranges(work, x.shape[2])
    return x


def mean_of_mirrored_(x, mirrored):
    """``x = (x + mirrored[..., ::-1]) / 2`` in place, in parallel threads.

    Args:
        x, mirrored (numpy.ndarray): (C, B, H, W) float32.

    Returns:
        numpy.ndarray: ``x``.
    """
    def work(start, stop):
        part = x[:, :, start:stop]
        part += mirrored[:, :, start:stop, ::-1]
        part *= np.float32(0.5)
    parallel_ranges(work, x.shape[2])
    return x
