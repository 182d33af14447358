"""OpenBLAS's AVX-512 GEMM kernels on AMD Zen 4 and Zen 5 (for the benchmarks).

The OpenBLAS that numpy 1.23's wheels bundle (0.3.20) does not know these
cores: left alone it picks its ancient "Barcelona" (SSE) kernels, and
with ``OPENBLAS_CORETYPE=Haswell``, the usual fix, its AVX2 ones, at about
half the float32 GEMM speed the cores have (120 instead of 225 GFLOP/s
per core on an EPYC Zen 5). ``OPENBLAS_CORETYPE=SkylakeX`` selects
AVX-512 kernels, whose instructions these cores have. OpenBLAS reads the
variable once, when numpy is first imported, so a process must set it
before: ``python -m benchmarks.bench_inference --openblas-coretype avx512``
does.
(The fast inference path brings its own, newer OpenBLAS:
:mod:`pspnet.inference.blas`.)
The module imports nothing but the standard library (numpy only inside
:func:`loaded_core_name`) so that it can be used before numpy.
"""

import ctypes
import glob
import os

#: The AVX-512 subsets OpenBLAS's SkylakeX kernels are built for.
SKYLAKEX_FLAGS = frozenset(
    ('avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl'))


def _cpu_vendor_and_flags(path='/proc/cpuinfo'):
    vendor, flags = None, set()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(':')
                key = key.strip()
                if key == 'vendor_id' and vendor is None:
                    vendor = value.strip()
                elif key == 'flags' and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return vendor, flags


def avx512_coretype(cpuinfo='/proc/cpuinfo'):
    """``'SkylakeX'`` on an AMD CPU with the AVX-512 subsets of OpenBLAS's
    SkylakeX kernels, else None (Intel CPUs get AVX-512 kernels from
    OpenBLAS anyway; CPUs without AVX-512 must not run them)."""
    vendor, flags = _cpu_vendor_and_flags(cpuinfo)
    if vendor == 'AuthenticAMD' and SKYLAKEX_FLAGS <= flags:
        return 'SkylakeX'
    return None


def loaded_core_name():
    """The kernel set numpy's bundled OpenBLAS runs (such as ``'Haswell'``
    or ``'SkylakeX'``), or None when it cannot be told (numpy built on
    another BLAS). Imports numpy."""
    import numpy
    root = os.path.dirname(os.path.dirname(os.path.abspath(numpy.__file__)))
    for path in sorted(glob.glob(os.path.join(root, 'numpy.libs',
                                              'libopenblas*'))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ('openblas_get_corename64_', 'openblas_get_corename'):
            function = getattr(lib, symbol, None)
            if function is not None:
                function.restype = ctypes.c_char_p
                return function().decode()
    return None
