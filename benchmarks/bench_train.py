"""Training speed of train_multi.py with 1 and 2 CPU processes.

    .venv/bin/python -m benchmarks.bench_train [--processes 1,2]
        [--crop-size 96] [--batchsize 2] [--iterations 8] [--warmup 2]
        [--json result/bench_train.json]

Writes a tiny Cityscapes in the real layout
(tests/helpers/dataset_factory.py) into a temporary folder, then runs
``mpiexec -n P python train_multi.py`` (CPU, PSPNetResNet50, random start,
no snapshot, data loaded in the training processes) for each process count
P, and reads the elapsed time of every iteration from the run's log. The
first ``--warmup`` iterations (start-up work) and the last one (it includes
the final validation) are left out. Each process gets ``cores // P`` BLAS
threads (OMP_NUM_THREADS). Reports iterations per second and images per
second (P x batch size per iteration); the machine's load is recorded with
the results.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

from benchmarks.json_results import write_json
from tests.helpers import dataset_factory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), 'mpiexec')


def _counts(text):
    return [int(n) for n in text.split(',')]


def measure(n_process, data_dir, out, args):
    """Run one training; return its timing figures."""
    n_iter = args.warmup + args.iterations + 1
    command = [
        MPIEXEC, '-n', str(n_process), sys.executable,
        os.path.join(ROOT, 'train_multi.py'), '--dataset', 'cityscapes',
        '--model', 'pspnet_resnet50', '--data-dir', data_dir, '--out', out,
        '--device', 'cpu', '--crop-size', str(args.crop_size),
        '--batchsize', str(args.batchsize), '--iteration', str(n_iter),
        '--pretrained-model', 'none', '--log-interval', '1',
        '--snapshot-interval', str(n_iter + 1), '--val-interval', '0',
        '--loaderjob', '0', '--no-progress']
    cores = len(os.sched_getaffinity(0))
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, cores // n_process)),
               MPLBACKEND='Agg')
    result = subprocess.run(command, cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    if result.returncode != 0:
        raise RuntimeError('train_multi.py failed:\n' + result.stderr)
    with open(os.path.join(out, 'log')) as f:
        elapsed = [entry['elapsed_time'] for entry in json.load(f)]
    start, stop = elapsed[args.warmup - 1], elapsed[-2]
    timed = len(elapsed) - 1 - args.warmup
    its = timed / (stop - start)
    return {'processes': n_process,
            'omp_num_threads': int(env['OMP_NUM_THREADS']),
            'timed_iterations': timed, 'seconds': stop - start,
            'iterations_per_second': its,
            'images_per_second': its * n_process * args.batchsize}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--processes', type=_counts, default=[1, 2])
    parser.add_argument('--crop-size', type=int, default=96)
    parser.add_argument('--batchsize', type=int, default=2)
    parser.add_argument('--iterations', type=int, default=8)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--json', default=os.path.join(
        'result', 'bench_train.json'))
    args = parser.parse_args()
    if args.warmup < 1 or args.iterations < 1:
        parser.error('--warmup and --iterations must be at least 1')
    if not os.path.isfile(MPIEXEC):
        parser.error('no mpiexec next to {}; pip install mpich'.format(
            sys.executable))

    work = tempfile.mkdtemp(prefix='bench-train-')
    try:
        size = (args.crop_size, args.crop_size * 3 // 2)
        data_dir = dataset_factory.make_cityscapes(
            os.path.join(work, 'cityscapes'), n_per_city=4, size=size,
            learnable=True)
        rows = [measure(n, data_dir, os.path.join(work, 'out{}'.format(n)),
                        args) for n in args.processes]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print('PSPNetResNet50 training on CPU, crop {0}x{0}, batch {1} per '
          'process'.format(args.crop_size, args.batchsize))
    print('{:>9} {:>7} {:>9} {:>10} {:>9}'.format(
        'processes', 'threads', 'iter/s', 'images/s', 'speed-up'))
    base = rows[0]['images_per_second']
    for row in rows:
        print('{:>9} {:>7} {:>9.3f} {:>10.3f} {:>9.2f}'.format(
            row['processes'], row['omp_num_threads'],
            row['iterations_per_second'], row['images_per_second'],
            row['images_per_second'] / base))
    record = {'crop_size': args.crop_size, 'batchsize': args.batchsize,
              'model': 'pspnet_resnet50', 'device': 'cpu', 'runs': rows,
              'cpu_count': os.cpu_count(), 'load_average': os.getloadavg(),
              'machine': platform.platform()}
    write_json(args.json, record)


if __name__ == '__main__':
    main()
