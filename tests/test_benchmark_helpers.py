"""Helpers of the benchmarks (outside the package)."""

import pytest

from benchmarks import openblas_coretype as openblas


@pytest.mark.parametrize('vendor,flags,expected', [
    ('AuthenticAMD', 'fpu avx2 avx512f avx512dq avx512cd avx512bw avx512vl',
     'SkylakeX'),
    ('AuthenticAMD', 'fpu avx2', None),
    ('GenuineIntel', 'fpu avx2 avx512f avx512dq avx512cd avx512bw avx512vl',
     None),
])
def test_avx512_coretype(tmp_path, vendor, flags, expected):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nvendor_id\t: {}\nflags\t\t: {}\n\n'
                       .format(vendor, flags))
    assert openblas.avx512_coretype(str(cpuinfo)) == expected
    assert openblas.avx512_coretype(str(tmp_path / 'missing')) is None


def test_loaded_core_name():
    name = openblas.loaded_core_name()
    assert name is None or isinstance(name, str) and name
