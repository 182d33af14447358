"""Helpers of the benchmarks (outside the package)."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from benchmarks import bench_learn
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


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_learn_benchmark_coco_export_gives_its_labels(tmp_path, seed):
    """The COCO export of bench_learn --source coco, made into a dataset by
    prepare_dataset.py, labels every pixel as the label PNGs of the same
    draw do (off the ignored borders of those), and its images are the
    same files."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    direct = bench_learn.make_shapes_dataset(str(tmp_path / 'direct'), 5, 3,
                                             seed=seed)
    export = bench_learn.make_coco_export(str(tmp_path / 'coco'), 5, 3,
                                          seed=seed)
    kinds = [type(a['segmentation']).__name__ for split in ('train', 'val')
             for a in json.load(open(export[split]))['annotations']]
    assert set(kinds) == {'list', 'dict'}    # polygons and RLE
    out = tmp_path / 'prepared'
    subprocess.run([sys.executable, os.path.join(root, 'prepare_dataset.py'),
                    'coco', '--train', export['train'], '--val',
                    export['val'], '--images', export['images'], '--out',
                    str(out), '--no-progress'], check=True, cwd=root,
                   stdout=subprocess.DEVNULL)
    names = json.load(open(out / 'dataset.json'))['classes']
    to_prepared = np.array([names.index(c) for c in bench_learn.CLASSES])
    direct_root = os.path.dirname(direct)
    count = 0
    for split, n in (('train', 5), ('val', 3)):
        for k in range(n):
            stem = '{}_{:04d}.png'.format(split, k)
            want = np.array(Image.open(os.path.join(
                direct_root, 'labels', split, stem)))
            got = np.array(Image.open(out / 'labels' / split / stem))
            drawn = want != bench_learn.IGNORE
            assert (got != 255).all()
            np.testing.assert_array_equal(got[drawn],
                                          to_prepared[want[drawn]])
            with open(os.path.join(direct_root, 'images', split, stem),
                      'rb') as a, open(out / 'images' / split / stem,
                                       'rb') as b:
                assert a.read() == b.read()
            count += 1
    assert count == 8
