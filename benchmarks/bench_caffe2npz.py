"""Time and peak memory of caffe2npz.py on a full-size ResNet101 caffemodel.

    .venv/bin/python -m benchmarks.bench_caffe2npz [--runs 2]
        [--json result/bench_caffe2npz.json]

Writes a synthetic pspnet101_cityscapes.caffemodel in the released layout
(tests/helpers/caffemodel_factory.py, 263 MB like the real file) into a
temporary folder, converts it with ``python caffe2npz.py`` in a child
process per run and reports its wall time (Python start and imports
included), the time the script itself reports, and the child's peak resident
memory, also relative to the file size. The goal: at most 10 s and at
most twice the file size. Page-cache state matters for the first run; the
machine's load is recorded with the results.
"""

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks.json_results import write_json
from tests.helpers import caffemodel_factory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GOAL_SECONDS = 10.0
GOAL_MEMORY_RATIO = 2.0


def convert_once(source, target):
    """Run caffe2npz.py; return (wall s, reported s, peak RSS in bytes)."""
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'caffe2npz.py'), source, target],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = child.stdout.read()
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError('caffe2npz.py failed: {}'.format(err.strip()))
    reported = float(re.search(r'done in ([\d.]+) s', out).group(1))
    return wall, reported, usage.ru_maxrss * 1024  # ru_maxrss is in KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=2)
    parser.add_argument('--json', default=os.path.join(
        'result', 'bench_caffe2npz.json'))
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix='bench-caffe2npz-')
    try:
        source = os.path.join(work, 'pspnet101_cityscapes.caffemodel')
        target = os.path.join(work, 'pspnet101_cityscapes.npz')
        start = time.perf_counter()
        caffemodel_factory.write_caffemodel(source, 101, 19, 713, aux=False)
        size = os.path.getsize(source)
        print('wrote a synthetic ResNet101 caffemodel of {:.1f} MB in '
              '{:.1f} s'.format(size / 1e6, time.perf_counter() - start))
        runs = []
        for _ in range(args.runs):
            wall, reported, peak = convert_once(source, target)
            runs.append({'wall_s': round(wall, 2),
                         'reported_s': round(reported, 2),
                         'peak_rss_mb': round(peak / 1e6, 1),
                         'peak_over_file': round(peak / size, 2)})
        npz_size = os.path.getsize(target)
    finally:
        shutil.rmtree(work)

    print('{:>4} {:>9} {:>12} {:>14} {:>12}'.format(
        'run', 'wall (s)', 'script (s)', 'peak RSS (MB)', 'peak / file'))
    for i, run in enumerate(runs, 1):
        print('{:>4} {:>9.2f} {:>12.2f} {:>14.1f} {:>12.2f}'.format(
            i, run['wall_s'], run['reported_s'], run['peak_rss_mb'],
            run['peak_over_file']))
    worst_time = max(r['wall_s'] for r in runs)
    worst_memory = max(r['peak_over_file'] for r in runs)
    print('goal: <= {:.0f} s and <= {:.0f}x the file: {}'.format(
        GOAL_SECONDS, GOAL_MEMORY_RATIO,
        'met' if worst_time <= GOAL_SECONDS
        and worst_memory <= GOAL_MEMORY_RATIO else 'NOT met'))

    result = {
        'benchmark': 'caffe2npz.py on a synthetic pspnet101_cityscapes',
        'caffemodel_mb': round(size / 1e6, 1),
        'npz_mb': round(npz_size / 1e6, 1),
        'runs': runs,
        'goal': {'wall_s': GOAL_SECONDS,
                 'peak_over_file': GOAL_MEMORY_RATIO},
        'met': worst_time <= GOAL_SECONDS
        and worst_memory <= GOAL_MEMORY_RATIO,
        'machine': {'cpus': os.cpu_count(), 'load_avg': os.getloadavg(),
                    'python': platform.python_version(),
                    'platform': platform.platform()},
    }
    write_json(args.json, result)


if __name__ == '__main__':
    main()
