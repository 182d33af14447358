#!/usr/bin/env python
"""Train PSPNet with data parallelism over MPI processes (ChainerMN).

    mpiexec -n N python3 train_multi.py --dataset cityscapes|ade20k|voc|PATH.json
        --model pspnet_resnet50|pspnet_resnet101 [--data-dir D] [--lr 1e-2]
        [--batchsize 2] [--out result] [--iteration I] [--communicator C]
        [--crop-size N] [--device auto|gpu|cpu]
        [--pretrained-model imagenet|PATH|none] [--resume [SNAPSHOT]]
        [--snapshot-interval N] [--val-interval N] [--dtype float32|mixed16]
        [--class-weight FILE|median]

ChainerCV's recipe: one GPU per process (CPU processes without GPUs),
batch normalization over all processes, momentum SGD with a polynomial
learning rate, weight decay, ten times faster new layers, the auxiliary
loss on res4. Writes OUT/config.json, OUT/log, loss and lr plots,
snapshots OUT/snapshot_iter_N.npz and the final OUT/model_final.npz, which
demo.py and eval_semantic_segmentation.py load. One run per OUT; on CPUs
a run (also a resumed one) replays bit for bit with the same --seed.
"""

from pspnet import flags
from pspnet.datasets import description
from pspnet import models
from pspnet import mpi
from pspnet.cli import ArgumentParser
from pspnet.cli import exit_on_user_error
from pspnet.training import mixed16
from pspnet.training import run


def parse_args(argv=None):
    parser = ArgumentParser(
        description='Train PSPNet on Cityscapes, ADE20K, VOC (SBD '
        'train_aug) or a dataset description PATH.json with ChainerMN '
        '(start with mpiexec -n N).')
    parser.add_argument('--dataset', required=True,
                        type=flags.training_dataset,
                        metavar=flags.dataset_names(training=True))
    parser.add_argument('--model', required=True,
                        choices=sorted(models.MODELS))
    parser.add_argument('--data-dir', default='auto',
                        help="dataset folder (default 'auto': "
                        '$CHAINER_DATASET_ROOT/pfnet/chainercv/DATASET)')
    parser.add_argument('--lr', type=flags.positive_float, default=1e-2,
                        help='initial learning rate (default 0.01)')
    parser.add_argument('--batchsize', '--batch-size',
                        type=flags.positive_int, default=2,
                        help='images per process and iteration (default 2)')
    parser.add_argument('--out', default='result',
                        help='output folder (default result)')
    parser.add_argument('--iteration', type=flags.positive_int,
                        help='iterations (default: the recipe\'s, {}; for '
                        'PATH.json its "iterations", else {})'.format(
                            flags.dataset_defaults('iterations'),
                            description.DESCRIPTION_ITERATIONS))
    parser.add_argument('--communicator', choices=mpi.COMMUNICATORS,
                        help='ChainerMN communicator (default: pure_nccl '
                        'with GPUs, naive on CPUs)')
    parser.add_argument('--crop-size', type=flags.input_size, metavar='N',
                        help='training crop and network input size '
                        '(default: {}; for PATH.json its "input_size", else '
                        '{})'.format(
                            flags.dataset_defaults('input_size', training=True),
                            description.DESCRIPTION_INPUT_SIZE))
    parser.add_argument('--device', choices=('auto', 'gpu', 'cpu'),
                        default='auto',
                        help='auto (default): one GPU per process when '
                        'CuPy sees GPUs, else CPU')
    parser.add_argument('--pretrained-model', default='imagenet',
                        metavar='imagenet|PATH|none',
                        help='initial weights: imagenet (default, '
                        "ChainerCV's ImageNet extractor), an extractor or "
                        'PSPNet .npz, or none (from scratch)')
    parser.add_argument('--resume', nargs='?', const='latest',
                        metavar='SNAPSHOT',
                        help='continue a run: alone, from the latest '
                        'snapshot in --out; or from SNAPSHOT')
    parser.add_argument('--snapshot-interval', type=flags.positive_int,
                        default=2000, metavar='N', help='iterations between snapshots '
                        '(default 2000)')
    parser.add_argument('--keep-snapshots', type=flags.positive_int,
                        default=3, metavar='N', help='snapshots kept (default 3)')
    parser.add_argument('--val-interval', type=flags.non_negative_int,
                        default=10000, metavar='N', help='iterations between validations; '
                        '0: only at the end (default 10000)')
    parser.add_argument('--log-interval', type=flags.positive_int,
                        default=10, metavar='N', help='iterations between log lines (default 10)')
    parser.add_argument('--loaderjob', type=flags.non_negative_int,
                        metavar='N', help='data loading processes per process; 0 loads '
                        'in the process (default: the free cores, at most '
                        '4)')
    parser.add_argument('--seed', type=flags.non_negative_int, default=0,
                        help='seed of every random draw of the run: the '
                        'split of the data, the epochs\' order, the '
                        'augmentation, the new layers, dropout (default 0)')
    parser.add_argument('--dtype', choices=mixed16.TRAINING_DTYPES,
                        default='float32',
                        help='float32 (default) or mixed16: float16 '
                        'convolutions, float32 batch normalization and '
                        'master weights, dynamic loss scaling (for GPUs; '
                        'files stay float32)')
    parser.add_argument('--tf32', action='store_true',
                        help='let cuBLAS use TF32 for float32 matrix '
                        'products (GPUs of compute capability 8.0+)')
    parser.add_argument('--class-weight', type=flags.class_weight,
                        metavar='FILE|median',
                        help='weigh each class in the main and auxiliary '
                        'loss: FILE holds one weight per class (a JSON list '
                        'or one number per line), median computes '
                        'median-frequency weights from the training labels '
                        '(default: all 1)')
    parser.add_argument('--no-progress', dest='progress',
                        action='store_false', help='no progress bar')
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    run.train(vars(parse_args(argv)))


if __name__ == '__main__':
    main()
