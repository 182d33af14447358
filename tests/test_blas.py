"""The fast path's GEMM against numpy's, with and without its library."""

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from pspnet.inference import blas

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=['library', 'numpy'])
def backend(request, monkeypatch):
    """Runs a test on scipy-openblas32's CBLAS, then on the numpy
    fallback."""
    if request.param == 'library':
        if blas._cblas_sgemm() is None:
            pytest.skip('scipy-openblas32 is not installed')
    else:
        monkeypatch.setattr(blas, '_loaded', True)
        monkeypatch.setattr(blas, '_sgemm', None)
    return request.param


def operands(rng, m, k, n):
    return (rng.standard_normal((m, k)).astype(np.float32),
            rng.standard_normal((k, n)).astype(np.float32))


@pytest.mark.parametrize('m,k,n', [(1, 1, 1), (7, 33, 129), (64, 577, 300),
                                   (3, 1, 5), (1, 4, 1)])
@pytest.mark.parametrize('beta', [0.0, 1.0, 0.5])
def test_gemm_matches_numpy(backend, m, k, n, beta):
    rng = np.random.RandomState(m * 1000 + n)
    a, b = operands(rng, m, k, n)
    start = rng.standard_normal((m, n)).astype(np.float32)
    out = start.copy()
    assert blas.gemm(a, b, out, beta=beta) is out
    expected = a.astype(np.float64) @ b + beta * start
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_gemm_into_column_slice_leaves_the_rest(backend):
    rng = np.random.RandomState(1)
    a, b = operands(rng, 16, 40, 30)
    wide = np.full((16, 100), 7, np.float32)
    blas.gemm(a, b, wide[:, 50:80], beta=1.0)
    np.testing.assert_allclose(wide[:, 50:80], a @ b + 7, rtol=1e-4,
                               atol=1e-4)
    assert (wide[:, :50] == 7).all() and (wide[:, 80:] == 7).all()


def test_gemm_of_strided_views(backend):
    rng = np.random.RandomState(2)
    a, b = operands(rng, 20, 30, 40)
    transposed = np.ascontiguousarray(a.T).T        # column-major
    every_other = np.repeat(b, 2, axis=1)[:, ::2]  # column stride 2
    out = np.empty((20, 40), np.float32)
    blas.gemm(transposed, every_other, out)
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)


def test_gemm_rejects_mismatched_shapes(backend):
    a, b = operands(np.random.RandomState(3), 4, 5, 6)
    with pytest.raises(ValueError, match='do not match'):
        blas.gemm(a, b, np.empty((4, 7), np.float32))
    with pytest.raises(ValueError, match='do not match'):
        blas.gemm(a, b[:4], np.empty((4, 6), np.float32))


def test_library_kernels_follow_their_own_variable():
    """PSPNET_BLAS_CORETYPE picks the library's kernels; numpy's
    OPENBLAS_CORETYPE is left as it was."""
    pytest.importorskip('scipy_openblas32')
    if platform.machine() not in ('x86_64', 'AMD64'):
        pytest.skip('x86 kernel names')
    code = ('import os\n'
            'from pspnet.inference import blas\n'
            'print(blas.description())\n'
            'print(os.environ.get("OPENBLAS_CORETYPE"))\n'
            'print(os.environ.get("OPENBLAS_THREAD_TIMEOUT"))\n')
    env = dict(os.environ, PSPNET_BLAS_CORETYPE='Sandybridge',
               OPENBLAS_CORETYPE='Prescott', PYTHONPATH=ROOT)
    env.pop('OPENBLAS_THREAD_TIMEOUT', None)
    lines = subprocess.run([sys.executable, '-c', code], env=env, check=True,
                           capture_output=True, text=True).stdout.split('\n')
    assert lines[0].startswith('OpenBLAS 0.3')
    assert lines[0].endswith('(Sandybridge kernels)')
    assert lines[1:3] == ['Prescott', 'None']
