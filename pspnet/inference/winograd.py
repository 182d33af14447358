"""Winograd convolution F(m x m, 3 x 3) for stride-1 3x3 convolutions.

A 3x3 convolution computes each ``m x m`` block of outputs ("tile") from an
``(m + 2) x (m + 2)`` block of inputs. Winograd's minimal filtering
algorithm transforms the input tile (``B^T d B``) and the filter
(``G g G^T``) into ``(m + 2)^2`` values each, multiplies them element by
element and transforms the products back (``A^T M A``): ``(m + 2)^2``
multiplications per tile and channel pair instead of ``9 m^2`` (2.25x fewer
for F(2x2), 4x fewer for F(4x4)). Summed over input channels, the
element-wise stage is ``(m + 2)^2`` GEMMs of (C_out, C_in) @ (C_in, tiles).

A dilation-``d`` 3x3 convolution is an ordinary 3x3 convolution on each of
the ``d x d`` interleaved sub-grids ``x[:, i::d, j::d]`` of its input (its
taps are ``d`` apart, so they never leave the sub-grid), with padding
``pad / d``. The tiles here are taken on those sub-grids, which lets
dilated convolutions (ResNet's res4 and res5 in PSPNet) use the algorithm
as well.

The three transforms are small GEMMs too: with tiles gathered as
``(m + 2)^2`` rows, the input transform is one GEMM with the Kronecker
product ``B^T (x) B^T``, likewise the filter (``G (x) G``) and the output
(``A^T (x) A^T``) transforms. Filters are transformed at every call from
the current (batch normalization folded) weights, never stored.

Float32 error: F(2x2) is about as exact as the direct convolution; F(4x4)'s
transforms (entries up to 8 and 1/24) cost about one more decimal digit
(see ``benchmarks/bench_winograd.py``).
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided

from pspnet.inference import blas
from pspnet.inference.blas import gemm
from pspnet.inference.threads import parallel_ranges

#: Bytes of each of the transformed input and product blocks: input
#: channels are taken in blocks, and tile rows in chunks, to stay within it.
BLOCK_BYTES = 24 << 20

#: Run the element-wise stage's GEMMs one per thread
#: (:func:`pspnet.inference.blas.gemm_many`) rather than each on all
#: threads.
GEMMS_PER_THREAD = True


#: Interpolation points of F(4x4, 3x3) (and infinity). With 1/2 in place
#: of the usual 2, the largest float32 error of a convolution is about 3x
#: smaller (measured on 256-channel layers against float64).
POINTS_F4 = (0, 1, -1, 0.5, -2)


def toom_cook(points, m, r=3):
    """``(B^T, G, A^T)`` of F(m, r) from ``m + r - 2`` finite interpolation
    points and infinity, float64: A^T evaluates the output polynomial at
    the points, G the filter (divided by the Lagrange denominators), and
    B^T is solved for so that ``A^T [(G g) * (B^T d)]`` is the correlation
    of ``d`` and ``g`` for every d and g.
    """
    n = m + r - 1
    p = np.asarray(points, dtype=np.float64)
    if len(p) != n - 1:
        raise ValueError('F({}, {}) needs {} points'.format(m, r, n - 1))
    at, g = np.zeros((m, n)), np.zeros((n, r))
    for j in range(n - 1):
        at[:, j] = p[j] ** np.arange(m)
        g[j] = p[j] ** np.arange(r) / np.prod(
            [p[j] - p[k] for k in range(n - 1) if k != j])
    at[m - 1, n - 1] = g[n - 1, r - 1] = 1
    # sum_j at[i, j] g[j, k] bt[j, l] = (l == i + k), for each l.
    system = np.einsum('ij,jk->ikj', at, g).reshape(m * r, n)
    wanted = np.array([[float(l == i + k) for l in range(n)]
                       for i in range(m) for k in range(r)])
    bt = np.linalg.lstsq(system, wanted, rcond=None)[0]
    if np.abs(system @ bt - wanted).max() > 1e-9:
        raise ValueError('no Winograd transform for points {}'.format(
            points))
    return bt, g, at


def _matrices(m):
    """``(B^T, G, A^T)`` of F(m x m, 3 x 3) in float64, for m = 2
    (points 0, +-1, infinity) or 4 (:data:`POINTS_F4`)."""
    if m == 2:
        bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        g = [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]
        at = [[1, 1, 1, 0], [0, 1, -1, -1]]
        return tuple(np.array(a, dtype=np.float64) for a in (bt, g, at))
    if m == 4:
        bt, g, at = toom_cook(POINTS_F4, 4)
        # Entries are small dyadic fractions: round off the solver's
        # last bits.
        return np.round(bt * 2 ** 20) / 2 ** 20, g, at
    raise ValueError('Winograd tile size must be 2 or 4, not {}'.format(m))


_KRONECKER = {}


def transform_matrices(m):
    """The Kronecker products of F(m x m, 3 x 3), float32.

    Returns:
        tuple of numpy.ndarray: ``(input, filter, output)`` of shapes
        (a^2, a^2), (a^2, 9) and (m^2, a^2) with a = m + 2. Tile values
        are ordered row by row (``u * a + v``).
    """
    if m not in _KRONECKER:
        bt, g, at = _matrices(m)
        _KRONECKER[m] = tuple(np.ascontiguousarray(
            np.kron(t, t), dtype=np.float32) for t in (bt, g, at))
    return _KRONECKER[m]


def filter_layout(W, scale, out=None):
    """Weights in the layout :func:`conv3x3` takes, batch normalization's
    scale folded in.

    Args:
        W (numpy.ndarray): (C_out, C_in, 3, 3) float32.
        scale (numpy.ndarray): (C_out,) float32 per-channel factor.
        out (numpy.ndarray or None): One-dimensional float32 buffer of at
            least ``W.size`` values to write to, or None for a new array.

    Returns:
        numpy.ndarray: (C_out, C_in, 9) float32, C-contiguous: the
        weights' own order, so that the transformed filters come out as
        (a^2, C_out, C_in) and each GEMM of the element-wise stage reads
        a contiguous left operand.
    """
    out_channels, in_channels = W.shape[:2]
    shape = (out_channels, in_channels, 9)
    out = np.empty(shape, dtype=np.float32) if out is None else \
        out[:W.size].reshape(shape)
    W = W.reshape(shape)

    def fold(start, stop):
        np.multiply(W[start:stop], scale[start:stop, None, None],
                    out=out[start:stop])

    parallel_ranges(fold, out_channels)
    return out


def _transform(matrix, values, out):
    """``out = matrix @ values`` for a small transform matrix and many
    columns."""
    blas.gemm_columns(matrix, values, out)


def tile_grid(height, width, m, dilate):
    """Tiles per sub-grid along each axis: ``(rows, columns)``."""
    def count(size):
        return -(-(-(-size // dilate)) // m)
    return count(height), count(width)


def conv3x3(x, filters, bias, out, m, dilate, pool=None):
    """A stride-1 3x3 convolution with padding ``dilate`` (same size) by
    Winograd's F(m x m, 3 x 3) on the ``dilate x dilate`` sub-grids.

    Args:
        x (numpy.ndarray): (C_in + 1, B, H, W) or (C_in, B, H, W) float32
            feature map (a last ones channel is ignored).
        filters (numpy.ndarray): (C_out, C_in, 9) float32 from
            :func:`filter_layout`.
        bias (numpy.ndarray): (C_out,) float32.
        out (numpy.ndarray): (C_out, B, H, W) float32, written.
        m (int): Output tile size, 2 or 4.
        dilate (int): Dilation (and padding) of the convolution.
        pool (pspnet.inference.buffers.BufferPool or None): Where work
            buffers come from and go back to; None allocates them.
    """
    out_channels, in_channels = filters.shape[:2]
    _, batch, height, width = x.shape
    if out.shape != (out_channels, batch, height, width):
        raise ValueError('conv3x3: output of shape {}, not {}'.format(
            out.shape, (out_channels, batch, height, width)))
    take = (lambda shape: np.empty(shape, np.float32)) if pool is None \
        else pool.take
    give = (lambda *a: None) if pool is None else pool.give
    a = m + 2
    d = dilate
    rows, cols = tile_grid(height, width, m, d)
    # Padded sub-grid images of (rows * m + 2) x (cols * m + 2) values,
    # interleaved: padded row y = (s + 1) * d + i holds sub-grid i's row s.
    pad_h, pad_w = d * (rows * m + 2), d * (cols * m + 2)
    k_in, k_filter, k_out = transform_matrices(m)
    block = max(1, min(in_channels, BLOCK_BYTES // (4 * a * a * d * d *
                                                    rows * cols)))
    row_chunk = max(1, min(rows, BLOCK_BYTES // (
        4 * a * a * d * d * cols * max(out_channels, block))))
    n_blocks = -(-in_channels // block)
    cached = None
    for b in range(batch):
        for r0 in range(0, rows, row_chunk):
            r1 = min(rows, r0 + row_chunk)
            # Tiles ordered (tile row, i, j, tile column): the gathers'
            # and scatters' innermost loops run along tile columns.
            n_tiles = (r1 - r0) * d * cols * d
            products = take((a * a, out_channels, n_tiles))
            for k in range(n_blocks):
                c0, c1 = k * block, min(in_channels, (k + 1) * block)
                if cached is not None and n_blocks == 1:
                    transformed = cached
                else:
                    transformed = take((a * a, out_channels, c1 - c0))
                    _transform(k_filter, _filter_block(filters, c0, c1,
                                                       take, give),
                               transformed.reshape(a * a, -1))
                    if n_blocks == 1:
                        cached = transformed
                tiles = _input_tiles(x, b, c0, c1, r0, r1, m, d, cols,
                                     pad_h, pad_w, take, give)
                spectra = take((a * a, c1 - c0, n_tiles))
                _transform(k_in, tiles.reshape(a * a, -1),
                           spectra.reshape(a * a, -1))
                give(tiles)
                stage = [(transformed[t], spectra[t], products[t],
                          0.0 if k == 0 else 1.0) for t in range(a * a)]
                if GEMMS_PER_THREAD:
                    blas.gemm_many(stage)
                else:
                    for product in stage:
                        gemm(*product)
                give(spectra)
                if transformed is not cached:
                    give(transformed)
            _output_tiles(products, k_out, bias, out, b, r0, r1, m, d, cols,
                          take, give)
            give(products)
    give(cached)


def _filter_block(filters, c0, c1, take, give):
    """(9, C_out * (c1 - c0)) view of input channels [c0, c1) of
    ``filters``, copied to a contiguous block when they are not all."""
    out_channels, in_channels = filters.shape[:2]
    if c1 - c0 == in_channels:
        return filters.reshape(-1, 9).T
    block = take((out_channels, c1 - c0, 9))

    def copy(start, stop):
        block[start:stop] = filters[start:stop, c0:c1]

    parallel_ranges(copy, out_channels)
    # Given back at once: the transform that reads it runs before the
    # pool hands it out again.
    give(block)
    return block.reshape(-1, 9).T


def _input_tiles(x, b, c0, c1, r0, r1, m, d, cols, pad_h, pad_w, take,
                 give):
    """(a^2, C, tiles) gathered input tiles of channels [c0, c1) and tile
    rows [r0, r1) of image ``b``."""
    a = m + 2
    _, _, height, width = x.shape
    channels = c1 - c0
    # Padded rows the chunk reads: sub-grid rows r0 * m .. r1 * m + 1.
    y0, y1 = r0 * m * d, (r1 * m + 2) * d
    padded = take((channels, y1 - y0, pad_w))
    # Input row iy sits at padded row iy + d; the chunk starts at y0.
    src0, src1 = max(0, y0 - d), min(height, y1 - d)
    dst0, dst1 = src0 + d - y0, src1 + d - y0
    tiles = take((a, a, channels, r1 - r0, d, d, cols))
    sc, sy, _ = padded.strides
    # (channel, tile row, i, j, tile column, u, v).
    view = as_strided(padded, shape=(channels, r1 - r0, d, d, cols, a, a),
                      strides=(sc, m * d * sy, sy, 4, m * d * 4, d * sy,
                               d * 4))

    def gather(start, stop):
        part = padded[start:stop]
        part[:, :max(0, dst0)] = 0
        part[:, max(dst0, dst1):] = 0
        part[:, :, :d] = 0
        part[:, :, d + width:] = 0
        if dst1 > dst0:
            part[:, dst0:dst1, d:d + width] = x[c0 + start:c0 + stop, b,
                                                src0:src1]
        for u in range(a):
            for v in range(a):
                tiles[u, v, start:stop] = view[start:stop, ..., u, v]

    parallel_ranges(gather, channels)
    give(padded)
    return tiles


def _output_tiles(products, k_out, bias, out, b, r0, r1, m, d, cols, take,
                  give):
    """Transform the products of tile rows [r0, r1) back and write them,
    bias added, to ``out[:, b]``."""
    out_channels = products.shape[1]
    _, _, height, width = out.shape
    tiles = take((m, m, out_channels, r1 - r0, d, d, cols))
    _transform(k_out, products.reshape(products.shape[0], -1),
               tiles.reshape(m * m, -1))
    # Output row (r * m + u) * d + i of sub-grid i's tile row r.
    y0 = r0 * m * d
    y1 = min(height, r1 * m * d)
    full = take((out_channels, (r1 - r0) * m * d, cols * m * d))
    grid = full.reshape(out_channels, r1 - r0, m, d, cols, m, d)

    def scatter(start, stop):
        for u in range(m):
            for v in range(m):
                grid[start:stop, :, u, :, :, v].transpose(
                    0, 1, 2, 4, 3)[...] = tiles[u, v, start:stop]
        np.add(full[start:stop, :y1 - y0, :width],
               bias[start:stop, None, None], out=out[start:stop, b, y0:y1])

    parallel_ranges(scatter, out_channels)
    give(tiles, full)
