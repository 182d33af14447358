"""Evaluate PSPNet on a dataset's split (eval_semantic_segmentation.py).

Prints ChainerCV's table (IoU per class, mean IoU, class average accuracy,
global average accuracy) and the benchmark's own scores (Cityscapes: iIoU
and the category scores; ADE20K: the SceneParsing score); writes the
figures (``json``), the predictions in the format of the benchmark's
server (``save_predictions``, also for test splits without labels) and
their colours (``save_color``) and a report (``report``: the confusion
matrix as a picture and a table, each image's scores, pictures of the
worst images, a page that shows them). With ``json``, ``save_predictions``
or ``report`` the progress is kept in a checkpoint beside them, and the
same options continue an interrupted run. Under ``mpiexec`` the images are
split over the processes.
"""

import dataclasses
import glob
import os
import sys
import time

import chainer

from pspnet import atomic
from pspnet import device
from pspnet import evaluation_report
from pspnet import evaluations
from pspnet import mpi
from pspnet import progress as progress_bars
from pspnet.apps import model_options
from pspnet.datasets import registry
from pspnet.errors import UserError
from pspnet.evaluations import benchmark_scores
from pspnet.evaluations import checkpoints
from pspnet.evaluations import evaluator
from pspnet.evaluations import prediction_files
from pspnet.evaluations import report


@dataclasses.dataclass
class EvaluationOptions(model_options.ModelOptions):
    """The options of eval_semantic_segmentation.py: a
    :class:`~pspnet.apps.model_options.ModelOptions` (``dataset`` given) and
    what to evaluate and write.

    Attributes:
        split (str): The split (``'val'``; a test split gives predictions
            only).
        batchsize (int): Images read and predicted at a time.
        data_dir (str): The dataset's folder, ``'auto'`` for Chainer's
            dataset cache.
        limit (int or None): Evaluate only the first ``limit`` images.
        json (str or None): Also write every figure to this file.
        save_predictions (str or None): Folder of the prediction files.
        save_color (str or None): Folder of the predictions' colours.
        report (str or None): Folder of the report
            (:mod:`pspnet.evaluation_report`).
        report_worst (int or None): Pictures of the worst images in the
            report (None: :data:`pspnet.evaluations.report.DEFAULT_WORST`).
        checkpoint_interval (float): Seconds between checkpoint writes.
    """

    split: str = 'val'
    batchsize: int = 1
    data_dir: str = 'auto'
    limit: int = None
    json: str = None
    save_predictions: str = None
    save_color: str = None
    report: str = None
    report_worst: int = None
    checkpoint_interval: float = 30.0


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


@dataclasses.dataclass
class Plan:
    """What one process evaluates and where it writes (made by
    :func:`prepare`).

    Attributes:
        spec (pspnet.datasets.spec.DatasetSpec): The dataset.
        dataset (pspnet.datasets.SegmentationDataset): Its split.
        n_images (int): How many of its images are evaluated (``limit``).
        model (pspnet.PSPNet): The placed model.
        has_labels (bool): False for a test split (predictions only).
        instances (bool): Cityscapes instance ids are there (iIoU).
        digest (str): The images' names and count, which every process
            must agree on.
        writer (PredictionWriter or None): Writes the prediction files.
        fingerprint (dict or None): The options a checkpoint must match.
    """

    spec: object
    dataset: object
    n_images: int
    model: object
    has_labels: bool
    instances: bool
    digest: str
    writer: object = None
    fingerprint: dict = None


def prepare(options, comm):
    """Check the outputs, read the dataset, build the placed model (on
    every process; errors are agreed on by :func:`mpi.agree`). Nothing is
    created yet: the output folders are made by :func:`evaluate` once
    every process passed every check."""
    gpu = options.gpu
    if comm is not None and gpu >= 0:
        gpu = comm.intra_rank
    if options.json:
        try:
            atomic.check_target(options.json, '--json file')
        except UserError as e:
            raise UserError('--json: {}'.format(e))
    if options.save_color and not options.save_predictions:
        raise UserError('--save-color needs --save-predictions DIR')
    if options.save_predictions:
        prediction_files.check_output_dir(options.save_predictions,
                                          '--save-predictions')
    if options.save_color:
        if (os.path.abspath(options.save_color)
                == os.path.abspath(options.save_predictions)):
            raise UserError('--save-color {} is the --save-predictions '
                            'folder, whose files have the same names; give '
                            'another folder'.format(options.save_color))
        prediction_files.check_output_dir(
            options.save_color, '--save-color',
            will_exist=[options.save_predictions])
    if options.report_worst is not None and not options.report:
        raise UserError('--report-worst needs --report DIR')
    if options.report:
        report.check_report_folder(
            options.report, folders=[
                ('--save-predictions', options.save_predictions),
                ('--save-color', options.save_color)],
            files=[('--json', options.json)])
    spec = registry.lookup(options.dataset)
    dataset = spec.get(options.split, options.data_dir)
    has_labels = getattr(dataset, 'has_labels', True)
    if not has_labels and options.report:
        raise UserError('the {} split of {} has no labels, so there is '
                        'nothing to report; drop --report (--save-predictions '
                        'DIR writes the predictions)'.format(options.split,
                                                             spec.name))
    if not has_labels and not options.save_predictions:
        raise UserError('the {} split of {} has no labels, so there is '
                        'nothing to measure; pass --save-predictions DIR to '
                        'write the predictions for its server'.format(
                            options.split, spec.name))
    n_images = len(dataset) if options.limit is None else min(options.limit,
                                                           len(dataset))
    if hasattr(dataset, 'check_labels'):
        # A described dataset: its label values, checked up front (cached).
        dataset.check_labels(mpi.local_block(n_images, comm))
    model, lines = model_options.load_model(options, gpu)
    if comm is None or comm.rank == 0:
        for line in lines:
            print(line, flush=True)
    writer = None
    if options.save_predictions:
        writer = prediction_files.PredictionWriter(
            options.save_predictions, dataset.img_paths, spec.benchmark,
            spec.n_class, spec.label_colors, options.save_color)
    return Plan(
        spec=spec, dataset=dataset, n_images=n_images, model=model,
        has_labels=has_labels,
        instances=bool(has_labels and spec.benchmark == 'cityscapes'
                       and getattr(dataset, 'has_instances', False)),
        digest=checkpoints.dataset_digest(dataset, n_images), writer=writer)


def _check_same_dataset(digests, n_images, data_dir):
    if len(set(digests)) > 1:
        raise UserError(
            'the processes do not see the same dataset in {} ({} images on '
            'process 0; file names or counts differ on process(es) {}); give '
            'every process the same dataset'.format(
                data_dir, n_images, ', '.join(
                    str(r) for r, d in enumerate(digests)
                    if d != digests[0])))


def _fingerprint(options, plan, comm):
    model = plan.model
    # float16 sums are not float32 ones (float32 keeps the old fingerprint).
    half = {} if options.dtype == 'float32' else {'dtype': options.dtype}
    return checkpoints.fingerprint(
        model=getattr(model, 'model_name', None) or options.model,
        weights=checkpoints.file_identity(
            getattr(model, 'weights_path', None)),
        input_size=list(model.input_size), scales=(
            None if options.scales is None else list(options.scales)),
        flip=not options.no_flip, dataset=plan.spec.name, split=options.split,
        images=plan.digest, n_images=plan.n_images,
        processes=1 if comm is None else comm.size,
        rank=0 if comm is None else comm.rank,
        instances=bool(plan.instances),
        predictions=bool(options.save_predictions),
        colors=bool(options.save_color), **half)


def _checkpoint_base(options):
    """What the checkpoint lies beside: the --json file, else the
    --save-predictions folder, else the --report folder (or None)."""
    return options.json or options.save_predictions or options.report


def _checkpoint(options, plan, comm, indices):
    """This process's checkpoint path (None without --json,
    --save-predictions and --report) and its state, continued from the
    checkpoint when there is one."""
    state = checkpoints.EvaluationState(plan.spec.n_class,
                                           instances=plan.instances)
    base = _checkpoint_base(options)
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
    fingerprint = _fingerprint(options, plan, comm)
    checkpoints.load_checkpoint(path, state, fingerprint, len(indices))
    if options.report and len(state.rows) < state.n_done:
        raise UserError('evaluation checkpoint {} is of an earlier version '
                        'of this program, which kept no rows of the images '
                        'for --report; finish it without --report, or delete '
                        'it to start over'.format(path))
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


def evaluate(options, comm, plan):
    digests = mpi.allgather(comm, plan.digest)
    mpi.agree(comm, _check_same_dataset, digests, plan.n_images,
              options.data_dir)
    indices = mpi.shard_indices(plan.n_images, comm)
    path, state = mpi.agree(comm, _checkpoint, options, plan, comm, indices)
    # Every check passed on every process: the outputs may be created.
    created = []

    def make_output_dirs():
        created.extend(prediction_files.make_output_dirs([
            (option, folder) for option, folder in (
                ('--save-predictions', options.save_predictions),
                ('--save-color', options.save_color)) if folder]))
    try:
        mpi.agree(comm, make_output_dirs)
        _evaluate_into(options, comm, plan, indices, path, state)
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


def _evaluate_into(options, comm, plan, indices, path, state):
    n_done = sum(mpi.allgather(comm, state.n_done))
    if n_done and (comm is None or comm.rank == 0):
        sys.stderr.write('continuing from the checkpoint{} {} ({} of {} '
                         'images done)\n'.format(
                             '' if comm is None else 's of',
                             path if comm is None else
                             checkpoints.checkpoint_path(
                                 _checkpoint_base(options))[:-4]
                             + '-*', n_done, plan.n_images))
    last = [time.monotonic()]

    def after_batch(state):
        now = time.monotonic()
        if path is not None and (now - last[0] >= options.checkpoint_interval
                                 or state.n_done == len(indices)):
            checkpoints.save_checkpoint(path, state, plan.fingerprint)
            last[0] = now

    bar, progress = _progress_bar(comm, plan.n_images, len(indices),
                                  state.n_done)
    try:
        _run_together(options, comm, plan, indices, state, progress,
                      after_batch)
    finally:
        if bar is not None:
            bar.close()
    total = checkpoints.merge_states(mpi.allgather(comm, state.arrays()))
    if comm is None or comm.rank == 0:
        _report(options, plan, total)
    if options.report:
        _write_report(options, plan, comm, total)
    mpi.allgather(comm, None)  # rank 0 has written its files
    if path is not None:
        checkpoints.remove_checkpoint(path)


def _raise_if(error):
    if error is not None:
        raise UserError(error)


def _run_together(options, comm, plan, indices, state, progress, after_batch):
    """Evaluate this process's share, the processes agreeing after every
    batch: a user error on one (a corrupt image, a bad label, a full disk)
    stops them all at their next batch (:func:`mpi.agree`), each leaving
    what it made in order, instead of ending the job with MPI's abort."""
    if comm is None or comm.size == 1:
        evaluator.run_evaluation(plan.model, plan.dataset, indices, state,
                                 batchsize=options.batchsize, progress=progress,
                                 writer=plan.writer, after_batch=after_batch)
        return
    # The shares may differ by a batch: the shorter ones agree on nothing
    # at the end, so that every process agrees as many times.
    rounds = max(mpi.allgather(comm, -(-(len(indices) - state.n_done)
                                       // options.batchsize)))
    agreed = [0]

    def after_batch_together(state):
        after_batch(state)
        agreed[0] += 1
        mpi.agree(comm, _raise_if, None)
    try:
        evaluator.run_evaluation(plan.model, plan.dataset, indices, state,
                                 batchsize=options.batchsize, progress=progress,
                                 writer=plan.writer,
                                 after_batch=after_batch_together)
    except UserError as e:
        if isinstance(e, mpi.CollectiveError):
            raise
        mpi.agree(comm, _raise_if, str(e))
    for _ in range(rounds - agreed[0]):
        mpi.agree(comm, _raise_if, None)


def _report(options, plan, total):
    spec = plan.spec
    if plan.has_labels:
        metrics, official = _scores(spec, total, plan.instances)
        sys.stdout.write(evaluator.format_table(metrics, spec.label_names,
                                                official))
        if spec.benchmark == 'cityscapes' and not plan.instances:
            sys.stdout.write('(no *_gtFine_instanceIds.png files: no iIoU)\n')
        if options.json:
            record = evaluator.metrics_record(
                metrics, plan.n_images, spec.label_names, total['confusion'],
                official)
            record['split'] = options.split
            evaluator.write_json(record, options.json)
    else:
        sys.stdout.write('no labels in the {} split of {}: predictions of {} '
                         'images written, no metrics\n'.format(
                             options.split, spec.name, plan.n_images))
        if options.json:
            evaluator.write_json({'n_images': plan.n_images,
                                  'split': options.split, 'labels': False,
                                  'label_names': list(spec.label_names)},
                                 options.json)
    if plan.writer is not None:
        for line in plan.writer.packing_hint(plan.n_images):
            sys.stdout.write(line + '\n')


def _description(options, plan):
    """What was evaluated, for the report's page."""
    model = plan.model
    weights = getattr(model, 'weights_path', None)
    return [
        ('dataset', plan.spec.name), ('split', options.split),
        ('model', options.model),
        ('weights', os.path.basename(weights) if weights else
         options.pretrained_model or 'published ({})'.format(
             plan.spec.name)),
        ('input size', str(model.input_size[0])),
        ('scales', ', '.join(str(s) for s in options.scales or (1.0,))),
        ('flip', 'no' if options.no_flip else 'yes')]


def _worst_pictures(plan, worst, mine, names, rows):
    """The pictures of this process's share of the worst images (their
    positions ``mine`` in ``worst``), predicted again."""
    spec = plan.spec
    pictures = []
    for k in mine:
        i = worst[k]
        img, gt_label = plan.dataset[i]
        pred_label = chainer.backends.cuda.to_cpu(
            plan.model.predict([img])[0])
        title = evaluation_report.worst_title(
            k + 1, names[i], [row[i] for row in rows])
        pictures.append((k, evaluation_report.worst_picture(
            img, gt_label, pred_label, spec.label_names,
            spec.label_colors, title)))
    return pictures


def _write_report(options, plan, comm, total):
    """The report's folder, from the rows of every process: the worst
    images are predicted again and drawn, shared out over the processes
    (the same pictures as one process draws), then rank 0 writes every
    file at once (:func:`pspnet.evaluation_report.write_report`)."""
    rank, size = (0, 1) if comm is None else (comm.rank, comm.size)
    rows = [total[key] for key in report.ImageRows.KEYS]
    if len(rows[0]) != plan.n_images:
        raise AssertionError('{} per-image rows for {} images'.format(
            len(rows[0]), plan.n_images))
    names = report.image_names(plan.dataset.img_paths[:plan.n_images])
    worst = report.worst_images(*rows, n=(
        report.DEFAULT_WORST if options.report_worst is None
        else options.report_worst))
    if worst and rank == 0:
        sys.stderr.write('report: drawing the {} worst images\n'.format(
            len(worst)))
    pictures = mpi.agree(comm, _worst_pictures, plan, worst,
                         range(rank, len(worst), size), names, rows)
    pictures = dict(picture for share in mpi.allgather(comm, pictures)
                    for picture in share)

    def write():
        if rank == 0:
            evaluation_report.write_report(
                options.report, evaluation_report.report_files(
                    _description(options, plan), total['confusion'],
                    plan.spec.label_names, names, *rows,
                    [(worst[k], pictures[k]) for k in range(len(worst))]))
    mpi.agree(comm, write)
    if rank == 0:
        sys.stdout.write('report in {} (open {})\n'.format(
            os.path.abspath(options.report),
            os.path.join(os.path.abspath(options.report), 'index.html')))


def _check_gpu(gpu):
    if gpu >= 0:
        device.require_gpu(gpu)


def run(options):
    """Evaluate as ``options`` say, on this process or, under ``mpiexec``,
    on every process of the job (their shares of the images, one GPU each
    with ``gpu``): prints the table, writes the files; a user error on any
    process stops them all with one line (raised on process 0)."""
    comm = None
    if mpi.launched_by_mpi():
        # Checked before MPI starts: a missing GPU in one line, once.
        mpi.before_mpi(model_options.check_options, options)
        mpi.before_mpi(_check_gpu, options.gpu)
        comm = mpi.create_communicator(
            'pure_nccl' if options.gpu >= 0 else 'naive',
            fix='install CuPy with NCCL (requirements-gpu.txt, see '
            'docs/gpu.md) or drop --gpu to evaluate on CPU processes'
            if options.gpu >= 0
            else 'reinstall requirements.txt (mpi4py and mpich)')
    mpi.run_collectively(
        comm, lambda: evaluate(options, comm, mpi.agree(
            comm, prepare, options, comm)))
