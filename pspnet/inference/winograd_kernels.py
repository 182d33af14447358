"""Compiled (Numba) kernels of :mod:`pspnet.inference.winograd`.

Each kernel works on a range of channels, releases the GIL, and is called
from the threads of :mod:`pspnet.inference.threads`. Tiles of a chunk of
tile rows ``[r0, r1)`` are ordered sub-grid by sub-grid,
``((i * d + j) * (r1 - r0) + ty) * cols + tx`` for sub-grid ``(i, j)``
(input rows ``i::d``, columns ``j::d``), tile row ``r0 + ty`` and tile
column ``tx``. Work buffers hold tiles in chunks of ``CHUNK`` (64), each
chunk tap by tap (:func:`_chunked`): a channel's input taps are gathered
into one through a table of plane offsets (:func:`tap_offsets`, computed
once per layer), each chunk is transformed by the straight-line codelets
of :mod:`pspnet.inference.winograd_codelets` (their rows ``CHUNK`` apart,
a constant, so that LLVM sees they never overlap and vectorizes the loop
over tiles), and the output transform's taps are scattered back through a
second table.

Compiled on first use and cached next to this file (or in Numba's cache
directory when that is not writable).
"""

import numba
import numpy as np

from pspnet.inference.winograd_codelets import CHUNK
from pspnet.inference.winograd_codelets import input_f2
from pspnet.inference.winograd_codelets import input_f4
from pspnet.inference.winograd_codelets import input_f6
from pspnet.inference.winograd_codelets import output_f2
from pspnet.inference.winograd_codelets import output_f4
from pspnet.inference.winograd_codelets import output_f6

_OPTIONS = dict(nogil=True, cache=True, fastmath={'contract'})

#: log2 of CHUNK.
SHIFT = CHUNK.bit_length() - 1
assert CHUNK == 1 << SHIFT


@numba.njit(**_OPTIONS)
def filters(weights, scale, g, o_lo, o_hi, c0, c1, out):
    """``out[k * a + l, o, c - c0] = (G w G^T)[k, l]`` for the 3x3 filter
    ``w = weights[o, c] * scale[o]``, output channels ``[o_lo, o_hi)``
    and input channels ``[c0, c1)``.

    Args:
        weights: (C_out, C_in, 9) float32.
        scale: (C_out,) float32.
        g: (a, 3) float32 filter transform.
        out: (a * a, C_out, c1 - c0) float32.
    """
    a = g.shape[0]
    n = c1 - c0
    taps = np.empty((9, n), np.float32)
    rows = np.empty((a, 3, n), np.float32)
    for o in range(o_lo, o_hi):
        s = scale[o]
        for c in range(n):
            for r in range(9):
                taps[r, c] = weights[o, c0 + c, r] * s
        for k in range(a):
            g0, g1, g2 = g[k, 0], g[k, 1], g[k, 2]
            for col in range(3):
                for c in range(n):
                    rows[k, col, c] = g0 * taps[col, c] + \
                        g1 * taps[3 + col, c] + g2 * taps[6 + col, c]
        for k in range(a):
            for l in range(a):
                g0, g1, g2 = g[l, 0], g[l, 1], g[l, 2]
                for c in range(n):
                    out[k * a + l, o, c] = rows[k, 0, c] * g0 + \
                        rows[k, 1, c] * g1 + rows[k, 2, c] * g2


@numba.njit(**_OPTIONS)
def _chunked(tile, tap, taps_per_tile):
    """Where tap ``tap`` of tile ``tile`` lies in a chunked buffer: tiles
    in chunks of ``CHUNK``, each chunk tap by tap."""
    return ((tile >> SHIFT) * taps_per_tile + tap << SHIFT) + (
        tile & (CHUNK - 1))


@numba.njit(**_OPTIONS)
def tap_offsets(height, width, r0, r1, m, d, cols, size):
    """Where the taps of the tiles of tile rows ``[r0, r1)`` lie in an
    (H, W) plane, in the chunked order of ``_chunked``: ``size = a`` (m +
    2) gives the input taps ``(u, v)`` of each tile, ``size = m`` its
    outputs ``(p, q)``. Taps outside the plane, and those of the unused
    tiles of the last chunk, are -1.

    Returns:
        numpy.ndarray: (ceil(tiles / CHUNK) * size^2 * CHUNK,) int64.
    """
    n_rows = r1 - r0
    n_grid = n_rows * cols
    n = d * d * n_grid
    n_chunks = -(-n // CHUNK)
    # Input taps start one dilation before the tile (the padding).
    shift = d if size > m else 0
    table = np.full(n_chunks * size * size * CHUNK, -1, np.int64)
    for i in range(d):
        for j in range(d):
            for ty in range(n_rows):
                for tx in range(cols):
                    tile = (i * d + j) * n_grid + ty * cols + tx
                    for u in range(size):
                        y = ((r0 + ty) * m + u) * d + i - shift
                        if y < 0 or y >= height:
                            continue
                        for v in range(size):
                            x = (tx * m + v) * d + j - shift
                            if 0 <= x < width:
                                table[_chunked(tile, u * size + v,
                                               size * size)] = y * width + x
    return table


@numba.njit(**_OPTIONS)
def inputs(x, b, c_lo, c_hi, c_off, m, offsets, spectra):
    """``spectra[k * a + l, c - c_off, t] = (B^T D B)[k, l]`` for the
    input tile ``D`` of each tile ``t``, channels ``[c_lo, c_hi)`` of
    image ``b``.

    Args:
        x: (C, B, H, W) float32, C-contiguous.
        m (int): Output tile size.
        offsets: Input taps from ``tap_offsets(..., size=m + 2)``.
        spectra: (a * a, C_block, tiles) float32.
    """
    a = m + 2
    _, batch, height, width = x.shape
    flat = x.reshape(-1)
    n = spectra.shape[2]
    n_chunks = -(-n // CHUNK)
    taps = np.empty(offsets.size, np.float32)
    chunk = np.empty(a * a * CHUNK, np.float32)
    scratch = np.empty(a * a * CHUNK, np.float32)
    for c in range(c_lo, c_hi):
        plane = flat[(c * batch + b) * height * width:
                     (c * batch + b + 1) * height * width]
        for e in range(offsets.size):
            offset = offsets[e]
            value = plane[max(offset, 0)]
            taps[e] = value if offset >= 0 else np.float32(0)
        for q in range(n_chunks):
            part = taps[q * a * a * CHUNK:(q + 1) * a * a * CHUNK]
            if m == 4:
                input_f4(part, chunk, scratch)
            elif m == 6:
                input_f6(part, chunk, scratch)
            else:
                input_f2(part, chunk, scratch)
            count = min(CHUNK, n - q * CHUNK)
            for k in range(a * a):
                row = spectra[k, c - c_off, q * CHUNK:q * CHUNK + count]
                values = chunk[k * CHUNK:k * CHUNK + count]
                for f in range(count):
                    row[f] = values[f]


@numba.njit(**_OPTIONS)
def outputs(products, o_lo, o_hi, m, offsets, bias, out, b, relu):
    """``out[o, b]`` from the element-wise products: ``A^T M A`` of each
    tile, plus ``bias[o]``, ReLU'd if ``relu``, for output channels
    ``[o_lo, o_hi)``; outputs past the image's edge are dropped.

    Args:
        products: (a * a, C_out, tiles) float32.
        m (int): Output tile size.
        offsets: Output taps from ``tap_offsets(..., size=m)``.
        bias: (C_out,) float32.
        out: (C_out, B, H, W) float32, C-contiguous.
    """
    a = m + 2
    _, batch, height, width = out.shape
    flat = out.reshape(-1)
    n = products.shape[2]
    n_chunks = -(-n // CHUNK)
    chunk = np.zeros(a * a * CHUNK, np.float32)
    scratch = np.empty(a * a * CHUNK, np.float32)
    tiles = np.empty(offsets.size, np.float32)
    for o in range(o_lo, o_hi):
        for q in range(n_chunks):
            count = min(CHUNK, n - q * CHUNK)
            for k in range(a * a):
                row = products[k, o, q * CHUNK:q * CHUNK + count]
                values = chunk[k * CHUNK:k * CHUNK + count]
                for f in range(count):
                    values[f] = row[f]
            part = tiles[q * m * m * CHUNK:(q + 1) * m * m * CHUNK]
            if m == 4:
                output_f4(chunk, bias[o], relu, part, scratch)
            elif m == 6:
                output_f6(chunk, bias[o], relu, part, scratch)
            else:
                output_f2(chunk, bias[o], relu, part, scratch)
        plane = flat[(o * batch + b) * height * width:
                     (o * batch + b + 1) * height * width]
        for e in range(offsets.size):
            offset = offsets[e]
            if offset >= 0:
                plane[offset] = tiles[e]
