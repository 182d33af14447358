"""GPU speed of PSPNet in each precision, in one run.

    .venv/bin/python -m benchmarks.bench_gpu [--gpu 0] [--iterations 10]
        [--warmup 3] [--modes float32,cudnn,tf32,half]
        [--json result/bench_gpu.json]

For each mode a child process (its own environment, its own CuPy memory
pool) measures, with random weights:

- ``forward``: the network alone, batch 1, PSPNetResNet101 at 713 and
  PSPNetResNet50 at 473 (best of ``--iterations`` after ``--warmup``);
- ``predict``: ``model.predict`` of one 1024x2048 image (Cityscapes'
  size; sliding windows with flips) at both depths (best of 3);
- ``train``: the training step of ``train_multi.py`` on one GPU
  (TrainChain with the auxiliary loss, multi-node BN, momentum SGD),
  PSPNetResNet101 at the recipe's crop 713 and batch 2: iterations per
  second over ``--iterations`` after ``--warmup``, and the CuPy memory
  pool's size at the end (the pool keeps every block it allocated, so this
  is the peak of the step, cuDNN workspace included).

The modes:

- ``float32``: no cuDNN (``CHAINER_USE_CUDNN=never``), no TF32
  (``NVIDIA_TF32_OVERRIDE=0``): Chainer's im2col and cuBLAS.
- ``cudnn``: cuDNN where this CuPy has it, still no TF32.
- ``tf32``: cuDNN where available, TF32 on (cuBLAS compute type; cuDNN 8
  uses TF32 for float32 convolutions by default).
- ``half``: float16 inference (``--dtype float16``) and mixed16 training
  (``--dtype mixed16``), cuDNN where available.

Without a CUDA GPU it prints one line and exits with status 1. ``--cpu``
runs the same code on the CPU at the sizes given (for the tests; not a
benchmark).
"""

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.json_results import write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODES = ('float32', 'cudnn', 'tf32', 'half')
_ENV = {
    'float32': {'CHAINER_USE_CUDNN': 'never', 'NVIDIA_TF32_OVERRIDE': '0'},
    'cudnn': {'CHAINER_USE_CUDNN': 'auto', 'NVIDIA_TF32_OVERRIDE': '0'},
    'tf32': {'CHAINER_USE_CUDNN': 'auto'},
    'half': {'CHAINER_USE_CUDNN': 'auto', 'NVIDIA_TF32_OVERRIDE': '0'},
}


def _sync(xp):
    if xp is not __import__('numpy'):
        xp.cuda.Device().synchronize()


def _best(run, xp, repeat, warmup):
    for _ in range(warmup):
        run()
    _sync(xp)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        _sync(xp)
        times.append(time.perf_counter() - start)
    return min(times)


def child(args):
    """One mode, in this process; prints one JSON line."""
    import chainer
    import numpy as np
    from pspnet import PSPNetResNet101
    from pspnet import PSPNetResNet50
    from pspnet import device
    from pspnet import mpi
    from pspnet import precision
    from pspnet.training import mixed16
    from pspnet.training import replicas
    from pspnet.training.optimizer import setup_optimizer
    from pspnet.training.optimizer import synchronize_start
    from pspnet.training.train_chain import TrainChain

    mode = args.child
    half = mode == 'half'
    gpu = None if args.cpu else args.gpu
    record = {'mode': mode}
    if gpu is not None:
        import cupy
        chainer.backends.cuda.get_device_from_id(gpu).use()
        chainer.backends.cuda.set_max_workspace_size(1024 ** 3)
        chainer.config.autotune = True
        record['gpu'] = device.describe_gpu(gpu)
        record['cudnn'] = device.cudnn_version()
        record['tf32'] = device.set_tf32(mode == 'tf32')
        pool = cupy.get_default_memory_pool()
        xp = cupy
    else:
        xp = np
    rng = np.random.RandomState(0)
    np.random.seed(0)

    def place(link):
        if gpu is not None:
            link.to_gpu(gpu)
        return link

    for name, cls, size in (('r101', PSPNetResNet101, args.r101_size),
                            ('r50', PSPNetResNet50, args.r50_size)):
        model = place(cls(19, input_size=size))
        precision.inference_model(model, 'float16' if half else 'float32')
        model.fast_inference = False
        x = xp.asarray(rng.uniform(-100, 100, (1, 3, size, size)).astype(
            np.float32))

        def forward():
            with chainer.using_config('train', False), \
                    chainer.no_backprop_mode():
                model.forward(x)
        record[name + '_forward_s'] = _best(forward, xp, args.iterations,
                                            args.warmup)
        img = rng.uniform(0, 255, (3,) + args.image).astype(np.float32)
        record[name + '_predict_s'] = _best(lambda: model.predict([img]),
                                            xp, 3, 1)
        del model

    if gpu is not None:
        pool.free_all_blocks()
    comm = mpi.create_communicator('pure_nccl' if gpu is not None
                                   else 'naive')
    chain = TrainChain(PSPNetResNet101(19, input_size=args.crop_size))
    if half:
        mixed16.to_mixed16(chain)
    chain = place(replicas.to_multi_node_batch_normalization(chain, comm))
    optimizer = setup_optimizer(chain, comm, lr=1e-3)
    mixed16.setup_loss_scaling(optimizer, 'mixed16' if half else 'float32')
    synchronize_start(optimizer, comm)
    shape = (args.batchsize, 3, args.crop_size, args.crop_size)
    imgs = xp.asarray(rng.uniform(-100, 100, shape).astype(np.float32))
    labels = xp.asarray(rng.randint(-1, 19, shape[:1] + shape[2:]).astype(
        np.int32))
    losses = []

    def step():
        optimizer.update(chain, imgs, labels)
    for _ in range(args.warmup):
        step()
    _sync(xp)
    start = time.perf_counter()
    for _ in range(args.iterations):
        step()
    _sync(xp)
    record['train_iterations_per_s'] = args.iterations / (
        time.perf_counter() - start)
    with chainer.using_config('train', True):
        losses.append(float(chain(imgs, labels).array))
    record['train_loss_after'] = losses[-1]
    record['loss_scale'] = mixed16.loss_scale(optimizer)
    if gpu is not None:
        record['train_pool_gb'] = pool.total_bytes() / 1e9
    print(json.dumps(record), flush=True)


def _size(text):
    h, w = text.lower().split('x')
    return int(h), int(w)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--gpu', type=int, default=0)
    parser.add_argument('--modes', default=','.join(MODES))
    parser.add_argument('--iterations', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--r101-size', type=int, default=713)
    parser.add_argument('--r50-size', type=int, default=473)
    parser.add_argument('--crop-size', type=int, default=713)
    parser.add_argument('--batchsize', type=int, default=2)
    parser.add_argument('--image', type=_size, default=(1024, 2048),
                        metavar='HxW')
    parser.add_argument('--json', default=os.path.join('result',
                                                       'bench_gpu.json'))
    parser.add_argument('--cpu', action='store_true',
                        help='run on the CPU (a smoke test of this script)')
    parser.add_argument('--child', choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(',') if m]
    if any(m not in MODES for m in modes):
        parser.error('--modes: choose from {}'.format(','.join(MODES)))
    if args.child:
        return child(args)
    if args.cpu:
        modes = [m for m in modes if m in ('float32', 'half')]

    if not args.cpu:
        from pspnet.device import gpu_count
        if gpu_count() <= args.gpu:
            print('bench_gpu.py: no CUDA GPU {} here (CuPy missing or no '
                  'device); nothing measured'.format(args.gpu))
            return 1
    rows = []
    passed = [a for a in (argv if argv is not None else sys.argv[1:])]
    for mode in modes:
        env = dict(os.environ, PYTHONUNBUFFERED='1', **_ENV[mode])
        if mode != 'tf32':
            env.pop('CUPY_TF32', None)
        result = subprocess.run(
            [sys.executable, '-m', 'benchmarks.bench_gpu', '--child', mode]
            + passed, cwd=ROOT, env=env, stdout=subprocess.PIPE,
            universal_newlines=True)
        if result.returncode != 0:
            print('mode {} failed (exit {})'.format(mode, result.returncode))
            rows.append({'mode': mode, 'failed': result.returncode})
            continue
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    _print_table(rows, args)
    write_json(args.json, {'rows': rows, 'args': {
        k: v for k, v in vars(args).items() if k != 'child'}})
    return 0 if all('failed' not in r for r in rows) else 1


def _label(row):
    if row['mode'] == 'float32' or 'gpu' not in row:
        return row['mode']
    if row.get('cudnn') is None:
        return row['mode'] + ' (no cuDNN in this CuPy)'
    return '{} (cuDNN {})'.format(row['mode'], row['cudnn'])


def _print_table(rows, args):
    for row in rows:
        if 'gpu' in row:
            print(row['gpu'])
            break
    print('| mode | R101@{0} forward | R50@{1} forward | R101 predict {2}x{3} '
          '| R50 predict | train R101@{4} batch {5} it/s | pool GB |'.format(
              args.r101_size, args.r50_size, args.image[0], args.image[1],
              args.crop_size, args.batchsize))
    print('|:--|' + '--:|' * 6)
    for row in rows:
        if 'failed' in row:
            print('| {} | failed |'.format(row['mode']))
            continue
        print('| {} | {:.4f} s | {:.4f} s | {:.3f} s | {:.3f} s | {:.2f} | '
              '{} |'.format(
                  _label(row),
                  row['r101_forward_s'], row['r50_forward_s'],
                  row['r101_predict_s'], row['r50_predict_s'],
                  row['train_iterations_per_s'],
                  '{:.1f}'.format(row['train_pool_gb'])
                  if 'train_pool_gb' in row else '-'))


if __name__ == '__main__':
    sys.exit(main())
