"""Float32 GEMM for the fast path, from a current OpenBLAS.

numpy 1.23's wheels bundle OpenBLAS 0.3.20, which predates AMD's Zen 4 and
Zen 5 cores: it runs them on SSE kernels, or on AVX2 ones under
``OPENBLAS_CORETYPE=Haswell`` (the usual workaround), at about half of what
their AVX-512 units do. The fast path multiplies with the OpenBLAS of the
``scipy-openblas32`` wheel instead (the build SciPy and NumPy 2 ship,
0.3.34 here), through its CBLAS interface. That library picks its kernels
from the CPU it finds. ``OPENBLAS_CORETYPE`` is meant for numpy's older
library and is not passed on to it; ``PSPNET_BLAS_CORETYPE`` names its
kernels instead (``Haswell``, ``SkylakeX``...), for comparisons.

CBLAS also adds a product into its output (``beta = 1``), which lets a
convolution write onto its residual connection with no extra pass.

Where the wheel is missing or cannot be loaded, :func:`gemm` falls back to
``numpy.matmul``.
"""

import ctypes
import os
import threading

from pspnet.inference import threads

import numpy as np

#: Names this library's kernels for the fast path, in place of
#: ``OPENBLAS_CORETYPE``.
CORETYPE_VARIABLE = 'PSPNET_BLAS_CORETYPE'

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

_lock = threading.Lock()
_loaded = False
_sgemm = None
_set_threads = _get_threads = None
_description = 'numpy.matmul'


def _load_library():
    """The scipy-openblas32 library, or None.

    OpenBLAS reads its variables once, when loaded (importing the package
    loads it), so they are set for that moment only: ``OPENBLAS_CORETYPE``
    to :data:`CORETYPE_VARIABLE`'s value, or unset; and, unless given,
    ``OPENBLAS_THREAD_TIMEOUT`` to its minimum, so that OpenBLAS's threads
    sleep as soon as a GEMM ends instead of spinning for about 0.1 s
    against the threads of the elementwise work that follows.
    """
    settings = {'OPENBLAS_CORETYPE': os.environ.get(CORETYPE_VARIABLE),
                'OPENBLAS_THREAD_TIMEOUT': os.environ.get(
                    'OPENBLAS_THREAD_TIMEOUT', '4')}
    saved = {name: os.environ.get(name) for name in settings}
    try:
        _set_environment(settings)
        import scipy_openblas32
        return ctypes.CDLL(os.path.join(
            scipy_openblas32.get_lib_dir(),
            scipy_openblas32.get_library(fullname=True)))
    except (ImportError, OSError):
        return None
    finally:
        _set_environment(saved)


def _set_environment(values):
    for name, value in values.items():
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)


def _cblas_sgemm():
    """``cblas_sgemm`` of the library, loaded on first use, or None."""
    global _loaded, _sgemm, _description
    if _loaded:
        return _sgemm
    with _lock:
        if not _loaded:
            library = _load_library()
            function = getattr(library, 'scipy_cblas_sgemm', None)
            if function is not None:
                integer, pointer = ctypes.c_int, ctypes.c_void_p
                function.restype = None
                function.argtypes = (
                    [integer] * 6 + [ctypes.c_float, pointer, integer,
                                     pointer, integer, ctypes.c_float,
                                     pointer, integer])
                corename = getattr(library, 'scipy_openblas_get_corename')
                corename.restype = ctypes.c_char_p
                config = getattr(library, 'scipy_openblas_get_config')
                config.restype = ctypes.c_char_p
                _description = '{} ({} kernels)'.format(
                    config().decode().split(' DYNAMIC_ARCH')[0],
                    corename().decode())
                _sgemm = function
                global _set_threads, _get_threads
                _set_threads = getattr(
                    library, 'scipy_openblas_set_num_threads', None)
                _get_threads = getattr(
                    library, 'scipy_openblas_get_num_threads', None)
                if _set_threads is not None and _get_threads is not None:
                    _set_threads.argtypes = [ctypes.c_int]
                    _set_threads.restype = None
                    _get_threads.restype = ctypes.c_int
                else:
                    _set_threads = _get_threads = None
            _loaded = True
    return _sgemm


def description():
    """What :func:`gemm` runs on, such as ``'OpenBLAS 0.3.34.481.3
    (SkylakeX kernels)'`` or ``'numpy.matmul'``. Loads the library."""
    _cblas_sgemm()
    return _description


def _leading_dimension(array):
    """Row stride in elements of a 2-d float32 array whose rows are
    contiguous, or None."""
    rows, columns = array.shape
    if array.dtype != np.float32 or (
            columns > 1 and array.strides[1] != 4):
        return None
    if rows == 1:
        return max(1, columns)
    stride, remainder = divmod(array.strides[0], 4)
    if remainder or stride < max(1, columns):
        return None
    return stride


def _operand(array):
    """``(transpose flag, leading dimension)`` of a GEMM operand whose rows
    or (transposed) columns are contiguous, or None."""
    ld = _leading_dimension(array)
    if ld is not None:
        return _NO_TRANS, ld
    if array.ndim == 2 and array.shape[0] > 1:
        ld = _leading_dimension(array.T)
        if ld is not None:
            return _TRANS, ld
    return None


def gemm(a, b, out, beta=0.0):
    """``out = a @ b + beta * out`` in float32.

    Args:
        a (numpy.ndarray): (M, K) float32, its rows contiguous or (a
            transposed view) its columns.
        b (numpy.ndarray): (K, N) float32, likewise.
        out (numpy.ndarray): (M, N) float32, overlapping neither ``a`` nor
            ``b``; its rows may be slices of longer rows.
        beta (float): 0 overwrites ``out``; 1 adds the product to it.

    Returns:
        numpy.ndarray: ``out``.
    """
    (m, k), (k_b, n) = a.shape, b.shape
    if k != k_b or out.shape != (m, n):
        raise ValueError('gemm: shapes {}, {} and out {} do not match'
                         .format(a.shape, b.shape, out.shape))
    sgemm = _cblas_sgemm()
    operands = [_operand(a), _operand(b)]
    ldc = _leading_dimension(out)
    if sgemm is None or None in operands or ldc is None or 0 in (m, n, k):
        if beta == 0:
            np.matmul(a, b, out=out)
        elif beta == 1:
            out += a @ b
        else:
            out *= np.float32(beta)
            out += a @ b
        return out
    (trans_a, lda), (trans_b, ldb) = operands
    sgemm(_ROW_MAJOR, trans_a, trans_b, m, n, k, 1.0, a.ctypes.data,
          lda, b.ctypes.data, ldb, float(beta), out.ctypes.data, ldc)
    return out


def gemm_many(products):
    """Independent GEMMs, each on one thread, spread over the threads of
    :mod:`pspnet.inference.threads` (items taken as threads get free).

    Many mid-sized GEMMs (Winograd's element-wise stage) run faster this
    way than one after the other on all threads: no synchronization
    inside each GEMM, and a core slowed by other work takes fewer of
    them. The library's own threads are set to one meanwhile.

    Args:
        products (list of tuples): ``(a, b, out, beta)`` for :func:`gemm`;
            no ``out`` may overlap another product's operands.
    """
    _cblas_sgemm()
    if _set_threads is None or threads.THREADS == 1 or len(products) < 2:
        for product in products:
            gemm(*product)
        return
    with _lock:
        previous = _get_threads()
        _set_threads(1)
        try:
            threads.parallel_items(lambda i: gemm(*products[i]),
                                   len(products))
        finally:
            _set_threads(previous)


#: Column blocks per thread of :func:`gemm_columns`.
COLUMN_BLOCKS_PER_THREAD = 4


def gemm_columns(a, b, out, beta=0.0):
    """:func:`gemm` with the columns of ``b`` and ``out`` split into
    blocks, each block one single-threaded GEMM (:func:`gemm_many`). For
    wide products (1x1 convolutions, Winograd's transforms): about as fast
    as one multithreaded GEMM on an idle machine, and faster when other
    work holds a core."""
    n = b.shape[1]
    parts = min(max(1, n // 256), COLUMN_BLOCKS_PER_THREAD * threads.THREADS)
    bounds = [n * i // parts for i in range(parts + 1)]
    gemm_many([(a, b[:, s:e], out[:, s:e], beta)
               for s, e in zip(bounds[:-1], bounds[1:]) if e > s])
