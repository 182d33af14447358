"""Trainer extensions of data-parallel training: divergence stop,
validation split over processes, replica check, and rank 0's reports."""

import json
import math
import os
import shutil

import chainer
import numpy as np
from chainer.training import extension
from chainer.training import extensions

from pspnet import atomic
from pspnet import evaluations
from pspnet import mpi
from pspnet.atomic import save_json_atomic
from pspnet.evaluations import evaluator
from pspnet.training import mixed16
from pspnet.training import output
from pspnet.training import replicas
from pspnet.training import snapshots

#: Keys of the validation figures in the log and the printed table.
VALIDATION_KEYS = ('validation/main/miou',
                   'validation/main/mean_class_accuracy',
                   'validation/main/pixel_accuracy')


class TrainingDiverged(mpi.CollectiveError):
    """The loss became NaN or infinite on some process."""


class StopOnNonFiniteLoss(extension.Extension):
    """Stop every process when the loss is NaN or infinite on any of them.

    Runs every iteration on every process, before the snapshot, so no
    snapshot of broken weights is written; all processes raise
    :class:`TrainingDiverged` at the same iteration.

    Args:
        comm (chainermn.CommunicatorBase): Communicator of the processes.
        key (str): Observation holding the loss.
        snapshot_out (str): Folder of the snapshots, named in the message.
    """

    trigger = 1, 'iteration'
    priority = extension.PRIORITY_WRITER + 1

    def __init__(self, comm, key='main/loss', snapshot_out='result'):
        self._comm = comm
        self._key = key
        self._out = snapshot_out

    def __call__(self, trainer):
        loss = trainer.observation.get(self._key)
        bad = 0
        if loss is not None:
            value = float(chainer.backends.cuda.to_cpu(
                getattr(loss, 'array', loss)))
            bad = int(not math.isfinite(value))
        if self._comm.size > 1:
            bad = self._comm.allreduce_obj(bad)
        if bad:
            latest = snapshots.find_latest_snapshot(self._out)
            resume = ('resume from {} with --resume and a lower --lr'.format(
                latest) if latest else 'restart with a lower --lr')
            raise TrainingDiverged(
                'the training loss became NaN or infinite at iteration {} '
                '(learning rate {:g}); check that labels are class ids or -1, '
                'then {}'.format(trainer.updater.iteration,
                                 trainer.updater.get_optimizer('main').lr,
                                 resume))


class SegmentationValidator(extension.Extension):
    """Validation mIoU, class accuracy and pixel accuracy, split over the
    processes.

    Every process predicts a disjoint share of the validation images with
    ``model.predict`` (test mode), the confusion matrices are summed over
    the processes, and the figures are reported as
    ``validation/main/{miou,mean_class_accuracy,pixel_accuracy}``.

    Args:
        model (pspnet.PSPNet): The model being trained.
        dataset: Items ``(img, label)``: (3, H, W) float32 RGB in [0, 255],
            (H, W) int32 in [-1, n_class - 1].
        n_class (int): Number of classes.
        comm (chainermn.CommunicatorBase): Communicator of the processes.
    """

    priority = extension.PRIORITY_WRITER

    def __init__(self, model, dataset, n_class, comm):
        self._model = model
        self._dataset = dataset
        self._n_class = n_class
        self._comm = comm
        self._indices = mpi.shard_indices(
            len(dataset), comm)
        self.confusion = None

    def evaluate(self):
        """The figures (see
        :func:`pspnet.evaluations.semantic_segmentation_metrics`); the
        summed confusion matrix is kept in ``self.confusion``."""
        # A bad image or label on one process stops all of them together.
        confusion = mpi.agree(
            self._comm, evaluations.evaluate_model, self._model,
            self._dataset, self._indices, self._n_class)
        self.confusion = mpi.sum_over_processes(
            confusion, self._comm)
        return evaluations.semantic_segmentation_metrics(self.confusion)

    def __call__(self, trainer):
        metrics = self.evaluate()
        chainer.report({'validation/main/' + name: float(metrics[name])
                        for name in ('miou', 'mean_class_accuracy',
                                     'pixel_accuracy')})

    def write_report(self, path, label_names):
        """Print the last validation's table (IoU per class and the means)
        and write every figure to ``path`` as JSON, as
        eval_semantic_segmentation.py does."""
        metrics = evaluations.semantic_segmentation_metrics(self.confusion)
        print(evaluator.format_table(metrics, label_names), end='',
              flush=True)
        evaluator.write_json(evaluator.metrics_record(
            metrics, len(self._dataset), label_names, self.confusion), path)


class BestModel(extension.Extension):
    """Keep the weights of the best validation mIoU so far in
    ``OUT/model_best.npz``.

    Extend every process's trainer with it, with the validator's trigger,
    right after the validator: it reads the validator's
    ``validation/main/miou`` (the same on every process) and, when it is
    higher than every earlier one (NaN never is), rank 0 writes the model's
    float32 weights (the master weights of a mixed16 run) atomically, then
    ``OUT/model_best.json`` saying of which iteration and mIoU they are. It
    reports ``validation/main/best_miou`` and
    ``validation/main/best_iteration`` to the log. Its state (the best mIoU
    and its iteration) travels in the snapshots, so a resumed run goes on
    comparing with the best before it (:meth:`restore_file`).

    Args:
        model (pspnet.PSPNet): The model being trained.
        out (str): The output folder.
        comm: The communicator.
    """

    priority = extension.PRIORITY_WRITER

    def __init__(self, model, out, comm):
        self._model = model
        self._comm = comm
        self._out = out
        self.path = os.path.join(out, output.BEST_MODEL_FILE)
        self.best_miou = None
        self.best_iteration = None

    def __call__(self, trainer):
        miou = trainer.observation.get('validation/main/miou')
        if miou is not None and not math.isnan(float(miou)) and (
                self.best_miou is None or float(miou) > self.best_miou):
            self.best_miou = float(miou)
            self.best_iteration = trainer.updater.iteration
            if self._comm.rank == 0:
                self._write()
        if self.best_miou is not None:
            chainer.report({
                'validation/main/best_miou': self.best_miou,
                'validation/main/best_iteration': self.best_iteration})

    def _record(self):
        return {'iteration': self.best_iteration, 'miou': self.best_miou}

    def _write(self):
        record = os.path.join(self._out, output.BEST_RECORD_FILE)
        for path, write in (
                (self.path, lambda: atomic.save_npz_atomic(
                    self.path, mixed16.float32_arrays(self._model),
                    compression=False)),
                (record, lambda: save_json_atomic(record, self._record()))):
            try:
                write()
            except OSError as e:
                raise atomic.write_error(path, e)

    def _holds_best(self, folder):
        """Whether ``folder`` holds the files of the remembered best."""
        try:
            with open(os.path.join(folder, output.BEST_RECORD_FILE)) as f:
                record = json.load(f)
        except (OSError, ValueError):
            return False
        return record == self._record() and os.path.isfile(
            os.path.join(folder, output.BEST_MODEL_FILE))

    def restore_file(self, earlier_folder):
        """After a resume (the snapshot loaded), on rank 0: check that
        ``OUT/model_best.npz`` holds the best iteration the snapshot
        remembers, or copy it from the run's earlier folder (a run
        continued in a new ``--out``). Other processes do nothing.

        Returns:
            str or None: What was done: None (nothing to do), ``'copied
            from FOLDER'``, or ``'missing'`` (no such file is left, or the
            file is of another iteration); give it to every process's
            :meth:`restored`.
        """
        if self._comm.rank != 0 or self.best_miou is None or \
                self._holds_best(self._out):
            return None
        if earlier_folder and os.path.abspath(earlier_folder) != \
                os.path.abspath(self._out) and self._holds_best(
                    earlier_folder):
            for name in (output.BEST_MODEL_FILE, output.BEST_RECORD_FILE):
                _copy_atomic(os.path.join(earlier_folder, name),
                             os.path.join(self._out, name))
            return 'copied from ' + earlier_folder
        return 'missing'

    def restored(self, action):
        """Rank 0's :meth:`restore_file` result, on every process: without
        the file of the remembered best, the best is kept again from the
        next validation on.

        Returns:
            str or None: A line for the start of the output.
        """
        if action is None:
            return None
        line = 'best model (iteration {}, mIoU {:.4f}): {}'.format(
            self.best_iteration, self.best_miou,
            action if action != 'missing' else
            'not in {}; kept again from the next validation'.format(
                self._out))
        if action == 'missing':
            self.best_miou = self.best_iteration = None
        return line

    def serialize(self, serializer):
        try:
            best = float(serializer('best_miou', np.float64(
                np.nan if self.best_miou is None else self.best_miou)))
            iteration = int(serializer('best_iteration', np.int64(
                -1 if self.best_iteration is None else self.best_iteration)))
        except KeyError:  # a snapshot of a version that kept no best model
            return
        self.best_miou = None if math.isnan(best) else best
        self.best_iteration = None if iteration < 0 else iteration


def _copy_atomic(source, target):
    def copy(f):
        with open(source, 'rb') as src:
            shutil.copyfileobj(src, f)
    try:
        atomic.write_atomic(target, copy)
    except OSError as e:
        raise atomic.write_error(target, e)


class ReplicaCheck(extension.Extension):
    """Check that every process holds the same model at the end.

    Data-parallel training keeps the replicas equal only if every update
    and every BN statistic is shared; this extension compares the SHA-1 of
    every parameter and persistent array over the processes. Rank 0 writes
    the result to ``OUT/replica_check.json`` (see
    :func:`pspnet.training.replicas.compare_replicas`) and prints a
    warning when the replicas differ.
    """

    priority = extension.PRIORITY_READER

    def __init__(self, comm, link, out):
        self._comm = comm
        self._link = link
        self._out = out

    def __call__(self, trainer):
        result = replicas.compare_replicas(self._comm, self._link)
        if result is None:
            return
        result['iteration'] = trainer.updater.iteration
        save_json_atomic(
            os.path.join(self._out, 'replica_check.json'), result)
        if result['differing']:
            print('warning: the {} processes hold different values of {} '
                  'arrays (e.g. {}); the run is not data-parallel as it '
                  'should be'.format(result['n_processes'],
                                     len(result['differing']),
                                     ', '.join(result['differing'][:3])),
                  flush=True)


#: Losses the train chain reports.
LOSS_KEYS = ('main/loss', 'main/main_loss', 'main/aux_loss')


class AverageOverProcesses(extension.Extension):
    """Replace observations by their mean over all processes (for the
    losses: the loss of the whole batch), before they are logged.

    ChainerMN's ``ObservationAggregator`` does this but needs ChainerX in
    Chainer 7.8.1; this one sends all keys in one reduction.

    Args:
        comm (chainermn.CommunicatorBase): Communicator of the processes.
        keys (tuple of str): Observations to average; every process must
            report each of them every iteration.
    """

    trigger = 1, 'iteration'
    priority = extension.PRIORITY_EDITOR

    def __init__(self, comm, keys=LOSS_KEYS):
        self._comm = comm
        self._keys = tuple(keys)

    def __call__(self, trainer):
        observation = trainer.observation
        values = np.array([
            float(chainer.backends.cuda.to_cpu(
                getattr(observation[key], 'array', observation[key])))
            for key in self._keys])
        total = self._comm.mpi_comm.allreduce(values)
        for key, value in zip(self._keys, total / self._comm.size):
            observation[key] = float(value)


def add_reports(trainer, log_interval, validation_trigger, progress=True):
    """Rank 0's reports: ``OUT/log``, the printed table, a progress bar,
    and ``loss.png``, ``lr.png`` and ``miou.png`` plots.

    Args:
        trainer (chainer.training.Trainer): Rank 0's trainer.
        log_interval (int): Iterations between log lines.
        validation_trigger: Trigger of the validation.
        progress (bool): Show a progress bar.
    """
    import matplotlib
    matplotlib.use('Agg')

    log_trigger = (log_interval, 'iteration')
    trainer.extend(extensions.LogReport(trigger=log_trigger))
    trainer.extend(extensions.observe_lr(), trigger=log_trigger)
    trainer.extend(extensions.PrintReport(
        ['epoch', 'iteration', 'elapsed_time', 'lr', 'main/loss']
        + list(VALIDATION_KEYS)), trigger=log_trigger)
    if progress:
        trainer.extend(extensions.ProgressBar(
            update_interval=max(1, min(10, log_interval))))
    trainer.extend(extensions.PlotReport(
        ['main/loss', 'main/main_loss', 'main/aux_loss'], 'iteration',
        file_name='loss.png', trigger=log_trigger))
    trainer.extend(extensions.PlotReport(
        ['lr'], 'iteration', file_name='lr.png', trigger=log_trigger))
    trainer.extend(extensions.PlotReport(
        list(VALIDATION_KEYS) + ['validation/main/best_miou'], 'iteration',
        file_name='validation.png',
        trigger=validation_trigger))
