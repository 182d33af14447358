"""A whole data-parallel training run, as ``train_multi.py`` starts it.

Every process runs :func:`train`. The flow: pick GPUs or CPUs, start the
loader fork server, create the communicator; set up (agreeing on errors);
train; rank 0 saves ``OUT/model_final.npz``.
"""

import os
import sys
import time
import warnings

import chainer
from chainer import training
from chainer.training import extensions as chainer_extensions
from chainer.training import triggers

from pspnet import datasets
from pspnet.atomic import save_json_atomic
from pspnet.atomic import save_npz_atomic
from pspnet import models
from pspnet import mpi
from pspnet.errors import UserError
from pspnet.links.pspnet import MIN_INPUT_SIZE
from pspnet.training import distributed
from pspnet.training import extensions
from pspnet.training import initial_weights
from pspnet.training import loader
from pspnet.training import optimizer as optimizer_module
from pspnet.training import snapshots
from pspnet.training.train_chain import TrainChain

#: What the published recipe runs per dataset: crop size and iterations.
TRAINING_PRESETS = {
    'cityscapes': {'crop_size': 713, 'iteration': 90000},
    'ade20k': {'crop_size': 473, 'iteration': 150000},
}

#: Settings a resumed run must share with the run it continues (the
#: learning rate may change, e.g. lowered after a divergence).
RUN_IDENTITY = ('dataset', 'model', 'crop_size', 'batchsize', 'iteration',
                'seed', 'n_class')

CONFIG_FILE = 'config.json'
FINAL_MODEL_FILE = 'model_final.npz'
VALIDATION_FILE = 'validation.json'


def resolve_config(options):
    """The full configuration of a run from the command-line options.

    Args:
        options (dict): The options of ``train_multi.py`` (argparse names).

    Returns:
        dict: ``options`` completed by the dataset preset (``crop_size``,
        ``iteration``), ``n_class``; no MPI is involved.

    Raises:
        UserError: Unknown dataset or model, values out of range.
    """
    config = dict(options)
    dataset = config['dataset']
    if dataset not in TRAINING_PRESETS:
        raise UserError('no training recipe for dataset {!r}; use one of {}'
                        .format(dataset, ', '.join(sorted(TRAINING_PRESETS))))
    if config['model'] not in models.MODELS:
        raise UserError('unknown model {!r}; use one of {}'.format(
            config['model'], ', '.join(sorted(models.MODELS))))
    preset = TRAINING_PRESETS[dataset]
    for key in ('crop_size', 'iteration'):
        if config.get(key) is None:
            config[key] = preset[key]
    config['n_class'] = models.DATASET_PRESETS[dataset]['n_class']
    if config['crop_size'] < MIN_INPUT_SIZE:
        raise UserError('--crop-size {} is too small; use at least {} (the '
                        'recipe uses {})'.format(config['crop_size'],
                                                 MIN_INPUT_SIZE,
                                                 preset['crop_size']))
    positive = ('batchsize', 'iteration', 'snapshot_interval', 'log_interval')
    for key in positive:
        if config[key] < 1:
            raise UserError('--{} must be at least 1, not {}'.format(
                key.replace('_', '-'), config[key]))
    if config['val_interval'] < 0:
        raise UserError('--val-interval must be 0 (at the end only) or '
                        'positive, not {}'.format(config['val_interval']))
    if not config['lr'] > 0:
        raise UserError('--lr must be positive, not {}'.format(config['lr']))
    if config['keep_snapshots'] < 1:
        raise UserError('--keep-snapshots must be at least 1, not {}'.format(
            config['keep_snapshots']))
    if config.get('loaderjob') is not None and config['loaderjob'] < 0:
        raise UserError('--loaderjob must be 0 or more, not {}'.format(
            config['loaderjob']))
    return config


def validation_points(config):
    """Iterations after which the validation runs: every
    ``val_interval`` and at the end."""
    n_iter = config['iteration']
    step = config['val_interval']
    points = set(range(step, n_iter + 1, step)) if step else set()
    points.add(n_iter)
    return sorted(points)


def _check_resume_config(config, saved):
    differing = [key for key in RUN_IDENTITY
                 if key in saved and saved[key] != config[key]]
    if differing:
        raise UserError(
            'the run in {} used {}; resume with the same options, or start a '
            'new run with another --out'.format(config['out'], ', '.join(
                '--{} {}'.format(key.replace('_', '-'), saved[key])
                for key in differing if key != 'n_class')))


def _load_saved_config(out):
    import json
    path = os.path.join(out, CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as e:
        raise UserError('{} is corrupt ({}); delete it to resume without the '
                        'configuration check'.format(path, e))


class _Setup(object):
    """What the setup of one process builds."""


def _prepare(config, kind, comm):
    """Process-local setup, which may fail (checked by every process)."""
    s = _Setup()
    s.device = distributed.process_device(kind, comm)
    out = config['out']
    os.makedirs(out, exist_ok=True)
    s.resume_path = snapshots.resolve_resume(config['resume'], out)
    if s.resume_path is not None:
        info = snapshots.check_snapshot(s.resume_path)
        if info['n_processes'] != comm.size:
            raise UserError(
                'the snapshot {} was written by {} processes but {} are '
                'running; resume with mpiexec -n {}'.format(
                    s.resume_path, info['n_processes'], comm.size,
                    info['n_processes']))
        saved = _load_saved_config(os.path.dirname(
            os.path.abspath(s.resume_path)))
        if saved is not None:
            _check_resume_config(config, saved)
        s.resume_iteration = info['iteration']

    s.train = datasets.get_dataset(config['dataset'], 'train',
                                   config['data_dir'])
    s.val = datasets.get_dataset(config['dataset'], 'val', config['data_dir'])

    model = models.MODELS[config['model']](
        n_class=config['n_class'], input_size=config['crop_size'])
    if s.resume_path is None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', UserWarning)
            s.initial_weights = initial_weights.load_initial_weights(
                model, config['pretrained_model'])
        s.warnings = [str(w.message) for w in caught]
    else:
        s.initial_weights = 'snapshot {}'.format(s.resume_path)
        s.warnings = []
    s.model = model
    return s


def _build_trainer(config, s, comm):
    """Collective setup: model replicas, data shares, optimizer, trainer."""
    out = config['out']
    n_iter = config['iteration']
    is_root = comm.rank == 0

    train_chain = distributed.to_multi_node_batch_normalization(
        TrainChain(s.model), comm)
    model = train_chain.model
    train_chain.to_device(s.device)

    lengths = comm.mpi_comm.allgather(len(s.train)) if comm.size > 1 else [
        len(s.train)]
    if len(set(lengths)) > 1:
        raise mpi.CollectiveError(
            'the processes see training sets of different sizes {}; give '
            'every machine the same dataset at --data-dir'.format(lengths))
    n_loaders = config['loaderjob']
    if n_loaders is None:
        n_loaders = loader.auto_loader_count(comm)
    share = loader.process_share(s.train, comm, seed=config['seed'])
    train_iter = loader.training_iterator(
        share, model.mean, (config['crop_size'],) * 2, config['batchsize'],
        n_loaders)

    optimizer = optimizer_module.setup_optimizer(train_chain, comm,
                                                 lr=config['lr'])
    updater = training.updaters.StandardUpdater(
        train_iter, optimizer, device=s.device)
    trainer = training.Trainer(updater, (n_iter, 'iteration'), out)

    trainer.extend(chainer_extensions.PolynomialShift(
        'lr', 0.9, n_iter, optimizer=optimizer), trigger=(1, 'iteration'))
    trainer.extend(extensions.StopOnNonFiniteLoss(comm, snapshot_out=out))
    if comm.size > 1:
        trainer.extend(extensions.AverageOverProcesses(comm))
    snapshot_trigger = (config['snapshot_interval'], 'iteration')
    trainer.extend(snapshots.ProcessIteratorStates(comm, train_iter),
                   trigger=snapshot_trigger)
    if is_root:
        trainer.extend(chainer_extensions.snapshot(
            filename=snapshots.SNAPSHOT_PATTERN,
            writer=snapshots.AtomicWriter(),
            n_retains=config['keep_snapshots']), trigger=snapshot_trigger)

    points = validation_points(config)
    validator = extensions.SegmentationValidator(
        model, s.val, config['n_class'], comm)
    trainer.extend(validator, trigger=triggers.ManualScheduleTrigger(
        points, 'iteration'))
    trainer.extend(extensions.ReplicaCheck(comm, train_chain, out),
                   trigger=(n_iter, 'iteration'))
    if is_root:
        extensions.add_reports(
            trainer, config['log_interval'],
            triggers.ManualScheduleTrigger(points, 'iteration'),
            progress=config['progress'])
    return trainer, validator, n_loaders


def _describe(config, s, comm, kind, n_loaders):
    lines = [
        'training {} on {}: {} process(es) on {} ({} communicator), batch '
        '{} per process ({} in all), crop {}, {} iterations, lr {:g}'.format(
            config['model'], config['dataset'], comm.size,
            kind.upper(), config['communicator'], config['batchsize'],
            config['batchsize'] * comm.size, config['crop_size'],
            config['iteration'], config['lr']),
        'start: {}; {} loader process(es) per process; output in {}'.format(
            s.initial_weights, n_loaders, config['out']),
    ]
    if s.resume_path is not None:
        lines.append('resuming at iteration {} from {}'.format(
            s.resume_iteration, s.resume_path))
    return '\n'.join(lines)


def _save_config(config, comm, kind, n_loaders, s):
    record = dict(config)
    record.update({
        'n_processes': comm.size,
        'device_kind': kind,
        'loaderjob': n_loaders,
        'initial_weights': s.initial_weights,
        'chainer_version': chainer.__version__,
    })
    record.pop('resume')
    now = time.strftime('%Y-%m-%d %H:%M:%S')
    if s.resume_path is None:
        record['started'] = now
    else:
        # The run's configuration stays; each resume is added to it.
        record = _load_saved_config(config['out']) or record
        record['resumed'] = record.get('resumed', []) + [{
            'from': s.resume_path, 'iteration': s.resume_iteration,
            'lr': config['lr'], 'n_processes': comm.size, 'time': now}]
    path = os.path.join(config['out'], CONFIG_FILE)
    save_json_atomic(path, record)


def train(options):
    """Run (or resume) a training run on every process of the MPI job.

    Args:
        options (dict): ``train_multi.py``'s options: ``dataset``,
            ``model``, ``data_dir``, ``lr``, ``batchsize``, ``out``,
            ``iteration``, ``communicator``, ``crop_size``, ``device``,
            ``pretrained_model``, ``resume``, ``snapshot_interval``,
            ``val_interval``, ``log_interval``, ``keep_snapshots``,
            ``loaderjob``, ``seed``, ``progress``.

    Returns:
        str or None: On rank 0 the path of the final model, else None.

    Raises:
        UserError: On rank 0, anything the user can fix; the other
        processes exit with status 2 quietly (see
        :func:`pspnet.training.mpi.agree`).
    """
    try:
        config = resolve_config(options)
        kind = distributed.choose_device_kind(config['device'])
        config['communicator'] = distributed.choose_communicator(
            kind, config['communicator'])
        if config['loaderjob'] != 0:
            distributed.start_loader_processes_safely()
        comm = mpi.create_communicator(config['communicator'])
    except UserError:
        # Every process fails alike here; one message is enough.
        if mpi.launcher_rank() != 0:
            sys.exit(2)
        raise

    is_root = comm.rank == 0

    def prepare_build_and_run():
        s = mpi.agree(comm, _prepare, config, kind, comm)
        if is_root:
            for message in s.warnings:
                print('warning: ' + message, file=sys.stderr, flush=True)
        trainer, validator, n_loaders = _build_trainer(config, s, comm)
        if is_root:
            snapshots.remove_stale_temporaries(config['out'])
            _save_config(config, comm, kind, n_loaders, s)
            print(_describe(config, s, comm, kind, n_loaders), flush=True)
        if s.resume_path is not None:
            mpi.agree(comm, snapshots.load_snapshot, s.resume_path, trainer)
        optimizer_module.synchronize_start(
            trainer.updater.get_optimizer('main'), comm)
        # Errors are reported below (one line for user errors).
        trainer.run(show_loop_exception_msg=False)
        if not is_root:
            return None
        if validator.confusion is not None:
            validator.write_report(
                os.path.join(config['out'], VALIDATION_FILE),
                datasets.get_label_names(config['dataset']))
        path = os.path.join(config['out'], FINAL_MODEL_FILE)
        # Uncompressed: trained weights shrink by a few percent only.
        save_npz_atomic(path, trainer.updater.get_optimizer(
            'main').target.model, compression=False)
        print('saved the trained model to {}'.format(path), flush=True)
        return path

    try:
        return mpi.abort_on_error(comm, prepare_build_and_run)
    except mpi.CollectiveError:
        if not is_root:  # rank 0 tells the user
            sys.exit(2)
        raise
