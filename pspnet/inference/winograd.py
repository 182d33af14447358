"""Winograd convolution F(m x m, 3 x 3) for stride-1 3x3 convolutions.

A 3x3 convolution computes each ``m x m`` block of outputs ("tile") from an
``(m + 2) x (m + 2)`` block of inputs. Winograd's minimal filtering
algorithm transforms the input tile (``B^T d B``) and the filter
(``G g G^T``) into ``(m + 2)^2`` values each, multiplies them element by
element and transforms the products back (``A^T M A``): ``(m + 2)^2``
multiplications per tile and channel pair instead of ``9 m^2`` (2.25x fewer
for F(2x2), 4x for F(4x4), 5.06x for F(6x6)). Summed over input channels,
the element-wise stage is ``(m + 2)^2`` GEMMs of (C_out, C_in) @ (C_in,
tiles).

A dilation-``d`` 3x3 convolution is an ordinary 3x3 convolution on each of
the ``d x d`` interleaved sub-grids ``x[:, i::d, j::d]`` of its input (its
taps are ``d`` apart, so they never leave the sub-grid), with padding
``pad / d``. The tiles here are taken on those sub-grids, which lets
dilated convolutions (ResNet's res4 and res5 in PSPNet) use the algorithm
as well.

Every channel's tiles are gathered and transformed by compiled kernels
(Numba, :mod:`pspnet.inference.winograd_kernels`) running straight-line
transforms (:mod:`pspnet.inference.winograd_codelets`, written by
``tools/gen_winograd_codelets.py``); the element-wise stage runs on the
fast path's OpenBLAS. Filters are transformed at every call from the
current weights, batch normalization's scale folded in, never stored.
Without Numba, :func:`available` is False and the fast path computes
these convolutions by its direct methods.

Float32 error: F(2x2) is about as exact as the direct convolution; F(4x4)
and F(6x6) (transform entries up to 8 and 32) cost about one and two more
decimal digits (see ``benchmarks/bench_winograd.py``).
"""

import threading

import numpy as np

from pspnet.inference import blas
from pspnet.inference.blas import gemm
from pspnet.inference.threads import parallel_ranges

#: Bytes of the transformed input block: input channels are taken in
#: blocks of at most this size.
BLOCK_BYTES = 24 << 20

#: Bytes of the products (the element-wise stage's output, summed over the
#: input channel blocks): tile rows are taken in chunks of at most this
#: size. Every chunk transforms the filters anew when there are several
#: input channel blocks.
PRODUCT_BYTES = 48 << 20

#: Run the element-wise stage's GEMMs one per thread
#: (:func:`pspnet.inference.blas.gemm_many`) rather than each on all
#: threads.
GEMMS_PER_THREAD = True


#: Interpolation points of F(4x4, 3x3) (and infinity). With 1/2 in place
#: of the usual 2, the largest float32 error of a convolution is about 3x
#: smaller (measured on 256-channel layers against float64).
POINTS_F4 = (0, 1, -1, 0.5, -2)

#: Interpolation points of F(6x6, 3x3) (and infinity).
POINTS_F6 = (0, 1, -1, 0.5, -0.5, 2, -2)


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


def matrices(m):
    """``(B^T, G, A^T)`` of F(m x m, 3 x 3) in float64, for m = 2
    (points 0, +-1, infinity), 4 (:data:`POINTS_F4`) or 6
    (:data:`POINTS_F6`)."""
    if m == 2:
        bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        g = [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]
        at = [[1, 1, 1, 0], [0, 1, -1, -1]]
        return tuple(np.array(a, dtype=np.float64) for a in (bt, g, at))
    if m in (4, 6):
        bt, g, at = toom_cook(POINTS_F4 if m == 4 else POINTS_F6, m)
        # Entries are small dyadic fractions: round off the solver's
        # last bits.
        return np.round(bt * 2 ** 20) / 2 ** 20, g, at
    raise ValueError('Winograd tile size must be 2, 4 or 6, not {}'.format(
        m))


_FILTER_TRANSFORMS = {}


def filter_transform(m):
    """G of F(m x m, 3 x 3) in float32, C-contiguous, (m + 2, 3): the
    filter transform, applied along rows, then along columns (B^T and A^T
    are written into the codelets of
    :mod:`pspnet.inference.winograd_codelets`)."""
    if m not in _FILTER_TRANSFORMS:
        _FILTER_TRANSFORMS[m] = np.ascontiguousarray(matrices(m)[1],
                                                     dtype=np.float32)
    return _FILTER_TRANSFORMS[m]


def tile_grid(height, width, m, dilate):
    """Tiles per sub-grid along each axis: ``(rows, columns)``."""
    def count(size):
        return -(-(-(-size // dilate)) // m)
    return count(height), count(width)


#: What moving one float32 value of the transformed filters, inputs or
#: products costs (written by a transform, read by a GEMM), in
#: multiply-adds of the element-wise GEMMs: about 8 bytes of memory
#: traffic at 10 GB/s against a multiply-add at 440 GFLOP/s (idle 2-core
#: Zen 5). It makes F(6x6), whose filters are (8/6)^2 times F(4x4)'s, lose
#: where the filters outweigh the tiles.
TRAFFIC_MACS = 170


def choose_tile(height, width, dilate, in_channels, out_channels):
    """F(4x4) or F(6x6) for a convolution on an (H, W) input: 4 or 6, the
    one of lower estimated cost, ``(m + 2)^2 * (tiles * C_in * C_out +
    TRAFFIC_MACS * (C_in * C_out + tiles * (C_in + C_out)))`` with partial
    tiles at the edges counted. The estimate picks the faster tile of
    each of PSPNet's layers at 713 and 473 (``python -m
    benchmarks.bench_winograd`` times both).
    """
    def cost(m):
        rows, cols = tile_grid(height, width, m, dilate)
        tiles = rows * cols * dilate * dilate
        return (m + 2) ** 2 * (
            tiles * in_channels * out_channels + TRAFFIC_MACS * (
                in_channels * out_channels +
                tiles * (in_channels + out_channels)))
    return 6 if cost(6) < cost(4) else 4


def conv3x3(x, weights, scale, bias, out, m, dilate, pool=None, relu=False):
    """A stride-1 3x3 convolution with padding ``dilate`` (same size) by
    Winograd's F(m x m, 3 x 3) on the ``dilate x dilate`` sub-grids, batch
    normalization's scale folded into the filters.

    Args:
        x (numpy.ndarray): (C, B, H, W) float32 feature map, C >= C_in
            (channels past C_in, such as a last ones channel, are
            ignored); copied first when not C-contiguous.
        weights (numpy.ndarray): (C_out, C_in, 3, 3) float32 convolution
            weights, each filter's 9 taps contiguous.
        scale (numpy.ndarray): (C_out,) float32 per-channel factor.
        bias (numpy.ndarray): (C_out,) float32.
        out (numpy.ndarray): (C_out, B, H, W) float32, C-contiguous,
            written.
        m (int): Output tile size, 2, 4 or 6.
        dilate (int): Dilation (and padding) of the convolution.
        pool (pspnet.inference.buffers.BufferPool or None): Where work
            buffers come from and go back to; None allocates them.
        relu (bool): Apply a ReLU to the output.
    """
    out_channels, in_channels = weights.shape[:2]
    _, batch, height, width = x.shape
    if out.shape != (out_channels, batch, height, width):
        raise ValueError('conv3x3: output of shape {}, not {}'.format(
            out.shape, (out_channels, batch, height, width)))
    if weights.shape[2:] != (3, 3):
        raise ValueError('conv3x3: weights of shape {}'.format(
            weights.shape))
    take = (lambda shape: np.empty(shape, np.float32)) if pool is None \
        else pool.take
    give = (lambda *a: None) if pool is None else pool.give
    if not out.flags.c_contiguous:
        raise ValueError('conv3x3: out must be C-contiguous')
    # The kernels index the input as one flat array.
    x = np.ascontiguousarray(x)
    kernels = _kernels()
    g = filter_transform(m)
    a = m + 2
    d = dilate
    # A view where the 3x3 taps are contiguous (such as some input
    # channels of a bigger convolution's weights).
    weights = weights.reshape(out_channels, in_channels, 9)
    rows, cols = tile_grid(height, width, m, d)
    per_row = 4 * a * a * d * d * cols
    row_chunk = max(1, min(rows, PRODUCT_BYTES // (per_row * out_channels)))
    block = max(1, min(in_channels, BLOCK_BYTES // (per_row * row_chunk)))
    n_blocks = -(-in_channels // block)
    cached = None
    for r0 in range(0, rows, row_chunk):
        r1 = min(rows, r0 + row_chunk)
        # Tiles ordered (i, j, tile row, tile column): sub-grid by
        # sub-grid.
        n_tiles = d * d * (r1 - r0) * cols
        taps_in = kernels.tap_offsets(height, width, r0, r1, m, d, cols, a)
        taps_out = kernels.tap_offsets(height, width, r0, r1, m, d, cols, m)
        for b in range(batch):
            products = take((a * a, out_channels, n_tiles))
            for k in range(n_blocks):
                c0, c1 = k * block, min(in_channels, (k + 1) * block)
                if cached is not None:
                    transformed = cached
                else:
                    transformed = take((a * a, out_channels, c1 - c0))
                    parallel_ranges(
                        lambda s, e, c0=c0, c1=c1, t=transformed:
                        kernels.filters(weights, scale, g, s, e, c0, c1, t),
                        out_channels)
                    if n_blocks == 1:
                        cached = transformed
                spectra = take((a * a, c1 - c0, n_tiles))
                parallel_ranges(
                    lambda s, e, c0=c0, b=b, sp=spectra:
                    kernels.inputs(x, b, c0 + s, c0 + e, c0, m, taps_in, sp),
                    c1 - c0)
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
            parallel_ranges(
                lambda s, e, b=b, p=products:
                kernels.outputs(p, s, e, m, taps_out, bias, out, b, relu),
                out_channels)
            give(products)
    give(cached)


_compiled = None
_compile_lock = threading.Lock()


def available():
    """Whether the Winograd kernels can run (Numba imports); without it,
    the fast path computes every convolution by the direct methods."""
    try:
        _kernels()
    except (ImportError, OSError):
        return False
    return True


def _kernels():
    """The compiled kernels (:mod:`pspnet.inference.winograd_kernels`),
    imported on first use: importing Numba takes a moment, and scripts
    that never run the fast path do without it."""
    global _compiled
    if _compiled is None:
        with _compile_lock:
            if _compiled is None:
                from pspnet.inference import winograd_kernels
                _compiled = winograd_kernels
    return _compiled
