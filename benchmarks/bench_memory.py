"""Peak memory of one prediction versus the network input size, on the
fast CPU path and on Chainer's plain path: the figures behind
:mod:`pspnet.memory`.

    .venv/bin/python -m benchmarks.bench_memory [--sizes 97,193,289,385,481]
        [--depths 50,101] [--json result/bench_memory.json]

Each run is a fresh process: it builds a PSPNet of random weights (19
classes) at input size S, resets the kernel's record of its peak resident
memory (``/proc/self/clear_refs``), segments one S x S image (one window
and its flip, the default) and reports the growth of the peak over the
resident memory before the prediction: the buffers of the prediction,
not the weights. It then fits ``peak = a + b * S**2`` per path and
depth (least squares over the sizes) and prints the coefficients that
``pspnet/memory.py`` holds.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from benchmarks.json_results import write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_kb(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError('no {} in /proc/self/status'.format(field))


def child(depth, size, path):
    from pspnet import PSPNetResNet101, PSPNetResNet50
    cls = PSPNetResNet50 if depth == 50 else PSPNetResNet101
    np.random.seed(0)
    model = cls(19, input_size=size)
    model.fast_inference = path == 'fast'
    img = np.random.RandomState(0).uniform(
        0, 255, (3, size, size)).astype(np.float32)
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # the peak (VmHWM) restarts from the current RSS
    before = _status_kb('VmRSS')
    model.predict([img])
    peak = _status_kb('VmHWM')
    print(json.dumps({'depth': depth, 'size': size, 'path': path,
                      'rss_before_mb': before / 1024.0,
                      'peak_growth_mb': (peak - before) / 1024.0}))


def fit(rows):
    """Least squares ``growth_bytes = a + b * S**2``; returns (a, b)."""
    s2 = np.array([r['size'] ** 2 for r in rows], dtype=np.float64)
    y = np.array([r['peak_growth_mb'] * 2 ** 20 for r in rows])
    A = np.stack([np.ones_like(s2), s2], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(a), float(b)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', default='97,193,289,385,481')
    parser.add_argument('--depths', default='50,101')
    parser.add_argument('--json', default='result/bench_memory.json')
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), int(args.child[1]), args.child[2])
        return
    rows = []
    for path in ('fast', 'plain'):
        for depth in [int(d) for d in args.depths.split(',')]:
            for size in [int(s) for s in args.sizes.split(',')]:
                out = subprocess.run(
                    [sys.executable, '-m', 'benchmarks.bench_memory',
                     '--child', str(depth), str(size), path], cwd=ROOT,
                    check=True, capture_output=True, text=True).stdout
                row = json.loads(out.strip().splitlines()[-1])
                rows.append(row)
                print('{path:5} R{depth:<3} {size:4}: +{peak_growth_mb:8.1f}'
                      ' MB over {rss_before_mb:.0f} MB'.format(**row),
                      flush=True)
    fits = {}
    for path in ('fast', 'plain'):
        for depth in sorted({r['depth'] for r in rows}):
            runs = [r for r in rows
                    if r['path'] == path and r['depth'] == depth]
            a, b = fit(runs)
            worst = max(r['peak_growth_mb'] * 2 ** 20 /
                        (a + b * r['size'] ** 2) for r in runs)
            fits['{}/{}'.format(path, depth)] = {
                'constant_bytes': a, 'bytes_per_pixel': b,
                'worst_measured_over_fit': worst}
            print('{} R{}: peak growth = {:.0f} MB + {:.0f} bytes * S^2 '
                  '(largest measured/fit {:.2f})'.format(
                      path, depth, a / 2 ** 20, b, worst))
    write_json(args.json, {'runs': rows, 'fits': fits})


if __name__ == '__main__':
    main()
