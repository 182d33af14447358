"""Time and float32 error of the fast path's 3x3 convolutions, per layer,
by direct methods and by Winograd F(2x2), F(4x4) and F(6x6), and the tile
size the fast path chooses.

    .venv/bin/python -m benchmarks.bench_winograd [--size 713]

The layers are PSPNet's stride-1 3x3 convolutions at the given input size
(the stem's, one of each ResNet stage and the head's 4096 -> 512), on
random weights (Chainer's default initialization, batch normalization
folded in) and a non-negative random input, one image. The error is the
largest absolute difference from a float64 convolution over the largest
absolute output.
"""

import argparse
import time

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

from pspnet.inference import network
from pspnet.inference import winograd


def layers(size):
    stem = -(-size // 2)
    pooled = -(-(stem - 1) // 2) + 1
    feat = -(-pooled // 2)
    return [('conv1_2', 64, 64, stem, 1), ('conv1_3', 64, 128, stem, 1),
            ('res2 conv2', 64, 64, pooled, 1),
            ('res3 conv2', 128, 128, feat, 1),
            ('res4 conv2', 256, 256, feat, 2),
            ('res5 conv2', 512, 512, feat, 4),
            ('head_conv1', 2048, 512, feat, 1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', type=int, default=713)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--layers', nargs='*', help='names (default: all)')
    args = parser.parse_args()
    rng = np.random.RandomState(0)
    print('{:<12} {:>6} {:>6} {:>5} {:>3}  {:>9} {:>9} {:>9} {:>9}  {:>8} '
          '{:>8} {:>8} {:>8} {:>6}'.format(
              'layer', 'C_in', 'C_out', 'H', 'd', 'direct s', 'F2 s', 'F4 s',
              'F6 s', 'err dir', 'err F2', 'err F4', 'err F6', 'chosen'))
    for name, cin, cout, hw, d in layers(args.size):
        if args.layers and name not in args.layers:
            continue
        conv = L.Convolution2D(cin, cout, 3, 1, d, dilate=d, nobias=True)
        bn = L.BatchNormalization(cout)
        bn.gamma.array[:] = rng.uniform(0.5, 1.5, cout)
        bn.beta.array[:] = rng.uniform(-0.2, 0.2, cout)
        bn.avg_mean[:] = rng.uniform(-0.2, 0.2, cout)
        bn.avg_var[:] = rng.uniform(0.5, 2, cout)
        x = np.maximum(rng.randn(1, cin, hw, hw), 0).astype(np.float32)
        scale = bn.gamma.array / np.sqrt(bn.avg_var + bn.eps)
        with chainer.using_config('train', False):
            ref = F.convolution_2d(
                x.astype(np.float64),
                conv.W.array.astype(np.float64) * scale[:, None, None, None],
                (bn.beta.array - bn.avg_mean * scale).astype(np.float64),
                pad=d, dilate=d).array[0]
        fm = np.concatenate([x.transpose(1, 0, 2, 3),
                             np.ones((1, 1, hw, hw), np.float32)])
        times, errors = [], []
        for tile in (0, 2, 4, 6):
            network.WINOGRAD_TILE = tile
            network.WINOGRAD_MIN_CHANNELS = 0
            forward = network._Forward()
            out = forward.conv(conv, bn, None, fm)
            best = float('inf')
            for _ in range(args.repeat):
                forward.pool.give(out)
                start = time.perf_counter()
                out = forward.conv(conv, bn, None, fm)
                best = min(best, time.perf_counter() - start)
            times.append(best)
            errors.append(np.abs(out[:cout, 0] - ref).max()
                          / np.abs(ref).max())
        chosen = 'F{}'.format(winograd.choose_tile(hw, hw, d, cin, cout))
        print('{:<12} {:>6} {:>6} {:>5} {:>3}  {:>9.4f} {:>9.4f} {:>9.4f} '
              '{:>9.4f}  {:>8.1e} {:>8.1e} {:>8.1e} {:>8.1e} {:>6}'.format(
                  name, cin, cout, hw, d, *times, *errors, chosen),
              flush=True)


if __name__ == '__main__':
    main()
