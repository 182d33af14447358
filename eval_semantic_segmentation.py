"""Evaluate PSPNet on Cityscapes, ADE20K, VOC or PATH.json (val or test).

Prints ChainerCV's table (IoU per class, mean IoU, class average accuracy,
global average accuracy) and the benchmark's own scores (Cityscapes: iIoU
and the category scores; ADE20K: the SceneParsing score).
``--save-predictions DIR`` writes every prediction in the format of the
benchmark's server, also for the test splits (no labels, no metrics).
With ``--json`` or ``--save-predictions`` the progress is kept in a
checkpoint beside them: the same command continues an interrupted run.
``mpiexec -n N python eval_semantic_segmentation.py ...`` splits the
images over N processes (one GPU each with --gpu).
"""

import glob
import os
import sys
import time

from pspnet.datasets import registry
from pspnet import atomic
from pspnet import device
from pspnet import evaluations
from pspnet import flags
from pspnet import mpi
from pspnet import precision
from pspnet import progress as progress_bars
from pspnet.cli import ArgumentParser
from pspnet.cli import exit_on_user_error
from pspnet.errors import UserError
from pspnet.evaluations import benchmark_scores
from pspnet.evaluations import evaluator
from pspnet.evaluations import prediction_files
from pspnet.evaluations import checkpoints
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
    parser.add_argument('--split', default='val',
                        help="the split to evaluate (default 'val'); the "
                        'test splits, without labels, give predictions '
                        'only: {}'.format(flags.dataset_defaults(
                            'test_split')))
    parser.add_argument('--batchsize', type=flags.positive_int, default=1,
                        help='images read and passed to predict at a time '
                        '(default 1); results do not depend on it')
    parser.add_argument('--input-size', type=flags.input_size,
                        metavar='N', help='network input size (default: '
                        '{})'.format(flags.dataset_defaults('input_size')))
    flags.add_prediction_arguments(parser)
    parser.add_argument('--data-dir', default='auto',
                        help="dataset folder (default 'auto': "
                        '$CHAINER_DATASET_ROOT/pfnet/chainercv/DATASET)')
    parser.add_argument('--limit', type=flags.positive_int,
                        help='evaluate only the first N images')
    flags.add_inference_arguments(parser)
    parser.add_argument('--json', metavar='FILE',
                        help='also write every figure to FILE')
    parser.add_argument('--save-predictions', metavar='DIR',
                        help="write every image's prediction into DIR in "
                        "the format of the benchmark's server (Cityscapes: "
                        'label ids; ADE20K: 1 to 150; VOC: palette PNGs; '
                        'other datasets: class ids)')
    parser.add_argument('--save-color', metavar='DIR',
                        help='also write colour images of the predictions '
                        'into DIR')
    parser.add_argument('--checkpoint-interval', type=flags.non_negative_float,
                        default=30.0, metavar='SECONDS',
                        help='seconds between writes of the progress '
                        'checkpoint beside --json or --save-predictions '
                        '(default 30; 0: after every batch)')
    return parser.parse_args(argv)


def _progress_bar(comm, n_images, n_own, n_done):
    """A bar on rank 0 only, counting all the job's images (estimated from
    rank 0's share under MPI)."""
    if comm is not None and comm.rank != 0:
        return None, None

    def estimate(n_done_own):
        return n_images if n_done_own >= n_own else int(
            n_done_own * n_images / max(n_own, 1))
    bar = progress_bars.bar(total=n_images, unit='img', file=sys.stderr)
    if n_done:
        bar.update(estimate(n_done))

    def progress(n_done_own):
        bar.update(estimate(n_done_own) - bar.n)
    return bar, progress


class Plan(object):
    """What one process evaluates and where it writes."""


def prepare(args, comm):
    """Check the outputs, read the dataset, build the placed model (on
    every process; errors are agreed on by :func:`mpi.agree`). Nothing is
    created yet: the output folders are made by :func:`evaluate` once
    every process passed every check."""
    plan = Plan()
    gpu = args.gpu
    if comm is not None and gpu >= 0:
        gpu = comm.intra_rank
    if args.json:
        try:
            atomic.check_target(args.json, '--json file')
        except UserError as e:
            raise UserError('--json: {}'.format(e))
    if args.save_color and not args.save_predictions:
        raise UserError('--save-color needs --save-predictions DIR')
    if args.save_predictions:
        prediction_files.check_output_dir(args.save_predictions,
                                          '--save-predictions')
    if args.save_color:
        if (os.path.abspath(args.save_color)
                == os.path.abspath(args.save_predictions)):
            raise UserError('--save-color {} is the --save-predictions '
                            'folder, whose files have the same names; give '
                            'another folder'.format(args.save_color))
        prediction_files.check_output_dir(
            args.save_color, '--save-color',
            will_exist=[args.save_predictions])
    spec = registry.lookup(args.dataset)
    dataset = spec.get(args.split, args.data_dir)
    has_labels = getattr(dataset, 'has_labels', True)
    if not has_labels and not args.save_predictions:
        raise UserError('the {} split of {} has no labels, so there is '
                        'nothing to measure; pass --save-predictions DIR to '
                        'write the predictions for its server'.format(
                            args.split, spec.name))
    n_images = len(dataset) if args.limit is None else min(args.limit,
                                                           len(dataset))
    if hasattr(dataset, 'check_labels'):
        # A described dataset: its label values, checked up front (cached).
        dataset.check_labels(mpi.local_block(n_images, comm))
    model = build_model(args.model, args.dataset, args.pretrained_model,
                        args.input_size)
    model.scales = args.scales
    model.flip = not args.no_flip
    device.use_gpu(model, gpu)
    lines = precision.setup_inference(model, args.dtype, args.tf32, gpu)
    if comm is None or comm.rank == 0:
        for line in lines:
            print(line, flush=True)
    plan.spec, plan.dataset, plan.n_images, plan.model = (
        spec, dataset, n_images, model)
    plan.has_labels = has_labels
    plan.instances = (has_labels and spec.benchmark == 'cityscapes'
                      and getattr(dataset, 'has_instances', False))
    plan.digest = checkpoints.dataset_digest(dataset, n_images)
    plan.writer = None
    if args.save_predictions:
        plan.writer = prediction_files.PredictionWriter(
            args.save_predictions, dataset.img_paths, spec.benchmark,
            spec.n_class, spec.label_colors, args.save_color)
    return plan


def _check_same_dataset(digests, n_images, data_dir):
    if len(set(digests)) > 1:
        raise UserError(
            'the processes do not see the same dataset in {} ({} images on '
            'process 0; file names or counts differ on process(es) {}); give '
            'every process the same dataset'.format(
                data_dir, n_images, ', '.join(
                    str(r) for r, d in enumerate(digests)
                    if d != digests[0])))


def _fingerprint(args, plan, comm):
    model = plan.model
    # float16 sums are not float32 ones (float32 keeps the old fingerprint).
    half = {} if args.dtype == 'float32' else {'dtype': args.dtype}
    return checkpoints.fingerprint(
        model=args.model,
        weights=checkpoints.file_identity(
            getattr(model, 'weights_path', None)),
        input_size=list(model.input_size), scales=(
            None if args.scales is None else list(args.scales)),
        flip=not args.no_flip, dataset=plan.spec.name, split=args.split,
        images=plan.digest, n_images=plan.n_images,
        processes=1 if comm is None else comm.size,
        rank=0 if comm is None else comm.rank,
        instances=bool(plan.instances),
        predictions=bool(args.save_predictions),
        colors=bool(args.save_color), **half)


def _checkpoint(args, plan, comm, indices):
    """This process's checkpoint path (None without --json and
    --save-predictions) and its state, continued from the checkpoint when
    there is one."""
    state = checkpoints.EvaluationState(plan.spec.n_class,
                                           instances=plan.instances)
    base = args.json or args.save_predictions
    if not base:
        return None, state
    size, rank = (1, 0) if comm is None else (comm.size, comm.rank)
    path = checkpoints.checkpoint_path(base, rank, size)
    mine = {checkpoints.checkpoint_path(base, r, size)
            for r in range(size)}
    pattern = glob.escape(checkpoints.checkpoint_path(base)[:-4]) + '*.npz'
    others = sorted(p for p in glob.glob(pattern) if p not in mine)
    if others:
        raise UserError('evaluation checkpoint {} is of a run with another '
                        'process count; rerun it with that count, or delete '
                        'it to start over'.format(others[0]))
    fingerprint = _fingerprint(args, plan, comm)
    checkpoints.load_checkpoint(path, state, fingerprint, len(indices))
    plan.fingerprint = fingerprint
    return path, state


def _scores(spec, state_arrays, has_instances):
    confusion = state_arrays['confusion']
    metrics = evaluations.semantic_segmentation_metrics(confusion)
    official = {}
    if spec.benchmark == 'cityscapes':
        instances = None
        if has_instances:
            instances = benchmark_scores.InstanceIoUAccumulator()
            instances.class_sums = state_arrays['instance_class_sums']
            instances.category_sums = state_arrays['instance_category_sums']
        official = benchmark_scores.cityscapes_scores(confusion, instances)
    elif spec.benchmark == 'ade20k':
        official['scene_parsing_score'] = \
            benchmark_scores.scene_parsing_score(metrics)
    return metrics, official


def evaluate(args, comm, plan):
    digests = mpi.allgather(comm, plan.digest)
    mpi.agree(comm, _check_same_dataset, digests, plan.n_images,
              args.data_dir)
    indices = mpi.shard_indices(plan.n_images, comm)
    path, state = mpi.agree(comm, _checkpoint, args, plan, comm, indices)
    # Every check passed on every process: the outputs may be created.
    created = []

    def make_output_dirs():
        created.extend(prediction_files.make_output_dirs([
            (option, folder) for option, folder in (
                ('--save-predictions', args.save_predictions),
                ('--save-color', args.save_color)) if folder]))
    try:
        mpi.agree(comm, make_output_dirs)
        _evaluate_into(args, comm, plan, indices, path, state)
    except BaseException as e:
        # A failed or interrupted run keeps what a rerun continues from:
        # its checkpoint and the predictions before it. Without one, what
        # it made is of no use (files it replaced stay). Then the folders
        # it created go, those left empty. A failure the processes agreed
        # on (mpi.agree) reaches them all here: they remove the folders
        # once every one removed its files.
        folders = list(created)
        if plan.writer is not None:
            folders += plan.writer.created
            if not (path is not None and os.path.exists(path)):
                plan.writer.remove_written()
        if comm is not None and comm.size > 1 and isinstance(
                e, (mpi.CollectiveError, SystemExit)):
            folders = sorted({folder for made in mpi.allgather(comm, folders)
                              for folder in made})
        atomic.remove_created(folders=folders)
        raise


def _evaluate_into(args, comm, plan, indices, path, state):
    n_done = sum(mpi.allgather(comm, state.n_done))
    if n_done and (comm is None or comm.rank == 0):
        sys.stderr.write('continuing from the checkpoint{} {} ({} of {} '
                         'images done)\n'.format(
                             '' if comm is None else 's of',
                             path if comm is None else
                             checkpoints.checkpoint_path(
                                 args.json or args.save_predictions)[:-4]
                             + '-*', n_done, plan.n_images))
    last = [time.monotonic()]

    def after_batch(state):
        now = time.monotonic()
        if path is not None and (now - last[0] >= args.checkpoint_interval
                                 or state.n_done == len(indices)):
            checkpoints.save_checkpoint(path, state, plan.fingerprint)
            last[0] = now

    bar, progress = _progress_bar(comm, plan.n_images, len(indices),
                                  state.n_done)
    try:
        _run_together(args, comm, plan, indices, state, progress,
                      after_batch)
    finally:
        if bar is not None:
            bar.close()
    total = checkpoints.merge_states(mpi.allgather(comm, state.arrays()))
    if comm is None or comm.rank == 0:
        _report(args, plan, total)
    mpi.allgather(comm, None)  # rank 0 has written its files
    if path is not None:
        checkpoints.remove_checkpoint(path)


def _raise_if(error):
    if error is not None:
        raise UserError(error)


def _run_together(args, comm, plan, indices, state, progress, after_batch):
    """Evaluate this process's share, the processes agreeing after every
    batch: a user error on one (a corrupt image, a bad label, a full disk)
    stops them all at their next batch (:func:`mpi.agree`), each leaving
    what it made in order, instead of ending the job with MPI's abort."""
    if comm is None or comm.size == 1:
        evaluator.run_evaluation(plan.model, plan.dataset, indices, state,
                                 batchsize=args.batchsize, progress=progress,
                                 writer=plan.writer, after_batch=after_batch)
        return
    # The shares may differ by a batch: the shorter ones agree on nothing
    # at the end, so that every process agrees as many times.
    rounds = max(mpi.allgather(comm, -(-(len(indices) - state.n_done)
                                       // args.batchsize)))
    agreed = [0]

    def after_batch_together(state):
        after_batch(state)
        agreed[0] += 1
        mpi.agree(comm, _raise_if, None)
    try:
        evaluator.run_evaluation(plan.model, plan.dataset, indices, state,
                                 batchsize=args.batchsize, progress=progress,
                                 writer=plan.writer,
                                 after_batch=after_batch_together)
    except UserError as e:
        if isinstance(e, mpi.CollectiveError):
            raise
        mpi.agree(comm, _raise_if, str(e))
    for _ in range(rounds - agreed[0]):
        mpi.agree(comm, _raise_if, None)


def _report(args, plan, total):
    spec = plan.spec
    if plan.has_labels:
        metrics, official = _scores(spec, total, plan.instances)
        sys.stdout.write(evaluator.format_table(metrics, spec.label_names,
                                                official))
        if spec.benchmark == 'cityscapes' and not plan.instances:
            sys.stdout.write('(no *_gtFine_instanceIds.png files: no iIoU)\n')
        if args.json:
            record = evaluator.metrics_record(
                metrics, plan.n_images, spec.label_names, total['confusion'],
                official)
            record['split'] = args.split
            evaluator.write_json(record, args.json)
    else:
        sys.stdout.write('no labels in the {} split of {}: predictions of {} '
                         'images written, no metrics\n'.format(
                             args.split, spec.name, plan.n_images))
        if args.json:
            evaluator.write_json({'n_images': plan.n_images,
                                  'split': args.split, 'labels': False,
                                  'label_names': list(spec.label_names)},
                                 args.json)
    if plan.writer is not None:
        for line in plan.writer.packing_hint(plan.n_images):
            sys.stdout.write(line + '\n')


def _check_gpu(gpu):
    if gpu >= 0:
        device.require_gpu(gpu)


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    comm = None
    if mpi.launched_by_mpi():
        # Checked before MPI starts: a missing GPU in one line, once.
        mpi.before_mpi(_check_gpu, args.gpu)
        comm = mpi.create_communicator(
            'pure_nccl' if args.gpu >= 0 else 'naive',
            fix='install CuPy with NCCL (requirements-gpu.txt, see README) '
            'or drop --gpu to evaluate on CPU processes' if args.gpu >= 0
            else 'reinstall requirements.txt (mpi4py and mpich)')
    mpi.run_collectively(
        comm, lambda: evaluate(args, comm, mpi.agree(comm, prepare, args,
                                                     comm)))


if __name__ == '__main__':
    main()
