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

from pspnet import atomic
from pspnet.atomic import save_json_atomic
from pspnet.atomic import save_npz_atomic
from pspnet.datasets import registry
from pspnet import device
from pspnet import models
from pspnet import mpi
from pspnet.errors import UserError
from pspnet.training import extensions
from pspnet.training import initial_weights
from pspnet.training import loader
from pspnet.training import optimizer as optimizer_module
from pspnet.training import replicas
from pspnet.training import snapshots
from pspnet.training.train_chain import TrainChain

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
        options (dict): The options of ``train_multi.py`` (argparse names),
            already checked by their :mod:`pspnet.flags` types.

    Returns:
        dict: ``options`` completed by the dataset's recipe (``crop_size``,
        ``iteration``) and ``n_class``; no MPI is involved.

    Raises:
        UserError: Unknown dataset or model, a dataset without a recipe.
    """
    config = dict(options)
    spec = registry.lookup(config['dataset'])
    models.model_class(config['model'])
    if spec.iterations is None:
        raise UserError('no training recipe for dataset {!r}; use one of {}'
                        .format(spec.name, ', '.join(
                            s.name for s in registry.DATASETS.values()
                            if s.iterations is not None)))
    if config.get('crop_size') is None:
        config['crop_size'] = spec.input_size
    if config.get('iteration') is None:
        config['iteration'] = spec.iterations
    config['n_class'] = spec.n_class
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
    s.device = device.process_device(kind, comm)
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

    spec = registry.lookup(config['dataset'])
    s.train = spec.get(spec.train_split, config['data_dir'])
    s.val = spec.get('val', config['data_dir'])

    model = models.model_class(config['model'])(
        n_class=config['n_class'], input_size=config['crop_size'])
    if s.resume_path is None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', UserWarning)
            s.initial_weights = initial_weights.load_initial_weights(
                model, config['pretrained_model'])
        s.warnings = [str(w.message) for w in caught]
        s.aux = initial_weights.plan_auxiliary_head(
            config['pretrained_model'], config['n_class'])
        if s.aux.description:
            s.initial_weights += '; ' + s.aux.description
    else:
        s.aux = initial_weights.plan_auxiliary_head(
            config['pretrained_model'], config['n_class'], s.resume_path)
        s.initial_weights = 'snapshot {}'.format(s.resume_path)
        s.warnings = []
    s.model = model
    # The auxiliary head in the shape of its weights, loaded before the BN
    # links are copied into multi-node ones.
    s.train_chain = TrainChain(model, aux_channels=s.aux.channels,
                               aux_ksize=s.aux.ksize)
    s.aux.load_into(s.train_chain)
    return s


def _build_trainer(config, s, comm):
    """Collective setup: model replicas, data shares, optimizer, trainer."""
    out = config['out']
    n_iter = config['iteration']
    is_root = comm.rank == 0

    train_chain = replicas.to_multi_node_batch_normalization(
        s.train_chain, comm)
    model = train_chain.model
    train_chain.to_device(s.device)

    lengths = mpi.allgather(comm, len(s.train))
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
        :func:`pspnet.mpi.run_collectively`).
    """
    def start():
        config = resolve_config(options)
        kind = device.choose_device_kind(config['device'])
        config['communicator'] = mpi.choose_communicator(
            kind, config['communicator'])
        if config['loaderjob'] != 0:
            mpi.start_loader_processes_safely()
        return config, kind, mpi.create_communicator(config['communicator'])

    # Every process fails alike here; one message is enough.
    config, kind, comm = mpi.before_mpi(start)
    is_root = comm.rank == 0

    def prepare_build_and_run():
        s = mpi.agree(comm, _prepare, config, kind, comm)
        if is_root:
            for message in s.warnings:
                print('warning: ' + message, file=sys.stderr, flush=True)
        trainer, validator, n_loaders = _build_trainer(config, s, comm)
        if is_root:
            atomic.remove_stale_temporaries(config['out'])
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
                registry.lookup(config['dataset']).label_names)
        path = os.path.join(config['out'], FINAL_MODEL_FILE)
        # Uncompressed: trained weights shrink by a few percent only.
        save_npz_atomic(path, trainer.updater.get_optimizer(
            'main').target.model, compression=False)
        print('saved the trained model to {}'.format(path), flush=True)
        return path

    return mpi.run_collectively(comm, prepare_build_and_run)
