"""Evaluate PSPNet on the validation set of Cityscapes, ADE20K or VOC.

Prints ChainerCV's table (IoU per class, mean IoU, class average accuracy,
global average accuracy). ``mpiexec -n N python eval_semantic_segmentation.py
...`` splits the images over N processes (one GPU each with --gpu).
"""

import argparse
import os
import sys

import tqdm

from pspnet import datasets
from pspnet import evaluations
from pspnet import mpi
from pspnet.device import use_gpu
from pspnet.errors import ArgumentParser
from pspnet.errors import exit_on_user_error
from pspnet.errors import UserError
from pspnet.evaluations import distributed
from pspnet.evaluations import evaluator
from pspnet.models import build_model
from pspnet.models import MODELS


def _scales(text):
    try:
        scales = tuple(float(s) for s in text.split(','))
    except ValueError:
        scales = ()
    if not scales or min(scales) <= 0:
        raise argparse.ArgumentTypeError(
            'expected positive numbers separated by commas, such as '
            '0.5,0.75,1.0,1.25,1.5,1.75; got {!r}'.format(text))
    return scales


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            'expected a positive integer, got {!r}'.format(text))
    return value


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', required=True,
                        choices=sorted(datasets.DATASETS))
    parser.add_argument('--model', required=True, choices=sorted(MODELS))
    parser.add_argument('--gpu', type=int, default=-1,
                        help='GPU id (-1: CPU); under mpiexec each process '
                        'uses the GPU of its local rank')
    parser.add_argument('--pretrained-model',
                        help="'cityscapes', 'ade20k' or an npz file "
                        '(default: the published weights of --dataset)')
    parser.add_argument('--batchsize', type=_positive, default=1,
                        help='images read and passed to predict at a time '
                        '(default 1); results do not depend on it')
    parser.add_argument('--input-size', type=_positive,
                        help='network input size (default: 713 for '
                        'Cityscapes, 473 for ADE20K and VOC)')
    parser.add_argument('--scales', type=_scales,
                        help='multi-scale inference, e.g. '
                        '0.5,0.75,1.0,1.25,1.5,1.75 (default: one scale)')
    parser.add_argument('--no-flip', action='store_true',
                        help='do not average with horizontally flipped '
                        'predictions')
    parser.add_argument('--data-dir', default='auto',
                        help="dataset folder (default 'auto': "
                        '$CHAINER_DATASET_ROOT/pfnet/chainercv/DATASET)')
    parser.add_argument('--limit', type=_positive,
                        help='evaluate only the first N images')
    parser.add_argument('--json', metavar='FILE',
                        help='also write every figure to FILE')
    return parser.parse_args(argv)


def _check_json_path(path):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError('folder {} of --json {} does not exist; create it '
                        'or write elsewhere'.format(folder, path))


def _progress_bar(comm, n_images, n_own):
    """A bar on rank 0 only, counting all the job's images (estimated from
    rank 0's share under MPI)."""
    if comm is not None and comm.rank != 0:
        return None, None
    bar = tqdm.tqdm(total=n_images, unit='img', file=sys.stderr,
                    dynamic_ncols=True)

    def progress(n_done_own):
        done = n_images if n_done_own >= n_own else int(
            n_done_own * n_images / max(n_own, 1))
        bar.update(done - bar.n)
    return bar, progress


def prepare(args, comm):
    """The dataset, its class names, the number of images and the placed
    model."""
    gpu = args.gpu
    if comm is not None and gpu >= 0:
        gpu = comm.intra_rank
    if args.json:
        _check_json_path(args.json)
    dataset = datasets.get_dataset(args.dataset, 'val', args.data_dir)
    n_images = len(dataset) if args.limit is None else min(args.limit,
                                                           len(dataset))
    model = build_model(args.model, args.dataset, args.pretrained_model,
                        args.input_size)
    model.scales = args.scales
    model.flip = not args.no_flip
    use_gpu(model, gpu)
    return dataset, datasets.get_label_names(args.dataset), n_images, model


def evaluate(args, comm, dataset, label_names, n_images, model):
    indices = distributed.shard_indices(n_images, comm)
    bar, progress = _progress_bar(comm, n_images, len(indices))
    try:
        confusion = evaluator.evaluate_model(
            model, dataset, indices, len(label_names),
            batchsize=args.batchsize, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    confusion = distributed.sum_over_processes(confusion, comm)
    if comm is not None and comm.rank != 0:
        return
    metrics = evaluations.semantic_segmentation_metrics(confusion)
    sys.stdout.write(evaluator.format_table(metrics, label_names))
    if args.json:
        evaluator.write_json(evaluator.metrics_record(
            metrics, n_images, label_names, confusion), args.json)


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    comm = None
    if mpi.launched_by_mpi():
        comm = mpi.create_communicator('pure_nccl' if args.gpu >= 0
                                       else 'naive')
    try:
        setup = mpi.agree(comm, prepare, args, comm)
        mpi.abort_on_error(comm, evaluate, args, comm, *setup)
    except mpi.CollectiveError:
        if comm is not None and comm.rank != 0:
            sys.exit(2)  # rank 0 reports the error
        raise


if __name__ == '__main__':
    main()
