"""Evaluate PSPNet on the validation set of Cityscapes, ADE20K or VOC.

Prints ChainerCV's table (IoU per class, mean IoU, class average accuracy,
global average accuracy). ``mpiexec -n N python eval_semantic_segmentation.py
...`` splits the images over N processes (one GPU each with --gpu).
"""

import os
import sys

from pspnet.datasets import registry
from pspnet import evaluations
from pspnet import flags
from pspnet import mpi
from pspnet import precision
from pspnet import progress as progress_bars
from pspnet.device import use_gpu
from pspnet.errors import ArgumentParser
from pspnet.errors import exit_on_user_error
from pspnet.errors import UserError
from pspnet.evaluations import evaluator
from pspnet.models import build_model
from pspnet.models import MODELS


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', required=True, type=flags.dataset,
                        metavar=flags.dataset_names())
    parser.add_argument('--model', required=True, choices=sorted(MODELS))
    parser.add_argument('--gpu', type=int, default=-1,
                        help='GPU id (-1: CPU); under mpiexec each process '
                        'uses the GPU of its local rank')
    parser.add_argument('--pretrained-model',
                        help="'cityscapes', 'ade20k' or an npz file "
                        '(default: the published weights of --dataset)')
    parser.add_argument('--batchsize', type=flags.positive_int, default=1,
                        help='images read and passed to predict at a time '
                        '(default 1); results do not depend on it')
    parser.add_argument('--input-size', type=flags.input_size,
                        metavar='N', help='network input size (default: '
                        '{})'.format(flags.dataset_defaults('input_size')))
    parser.add_argument('--scales', type=flags.scales,
                        help='multi-scale inference, e.g. '
                        '0.5,0.75,1.0,1.25,1.5,1.75 (default: one scale)')
    parser.add_argument('--no-flip', action='store_true',
                        help='do not average with horizontally flipped '
                        'predictions')
    parser.add_argument('--data-dir', default='auto',
                        help="dataset folder (default 'auto': "
                        '$CHAINER_DATASET_ROOT/pfnet/chainercv/DATASET)')
    parser.add_argument('--limit', type=flags.positive_int,
                        help='evaluate only the first N images')
    precision.add_inference_arguments(parser)
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
    bar = progress_bars.bar(total=n_images, unit='img', file=sys.stderr)

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
    spec = registry.lookup(args.dataset)
    dataset = spec.get('val', args.data_dir)
    n_images = len(dataset) if args.limit is None else min(args.limit,
                                                           len(dataset))
    model = build_model(args.model, args.dataset, args.pretrained_model,
                        args.input_size)
    model.scales = args.scales
    model.flip = not args.no_flip
    use_gpu(model, gpu)
    lines = precision.setup_inference(model, args.dtype, args.tf32, gpu)
    if comm is None or comm.rank == 0:
        for line in lines:
            print(line, flush=True)
    return dataset, spec.label_names, n_images, model


def evaluate(args, comm, dataset, label_names, n_images, model):
    indices = mpi.shard_indices(n_images, comm)
    bar, progress = _progress_bar(comm, n_images, len(indices))
    try:
        confusion = evaluator.evaluate_model(
            model, dataset, indices, len(label_names),
            batchsize=args.batchsize, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    confusion = mpi.sum_over_processes(confusion, comm)
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
    mpi.run_collectively(
        comm, lambda: evaluate(args, comm, *mpi.agree(comm, prepare, args,
                                                      comm)))


if __name__ == '__main__':
    main()
