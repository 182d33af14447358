"""A whole data-parallel training run, as ``train_multi.py`` starts it.

Every process runs :func:`train`. The flow: pick GPUs or CPUs, start the
loader fork server, create the communicator; set up and check everything
(agreeing on errors) before anything is written: the output folder
(:mod:`pspnet.training.output`), the snapshot to resume from (read
completely), the dataset's label files; then write the configuration,
train, and rank 0 saves ``OUT/model_final.npz``. A run that fails before
its first snapshot leaves nothing behind.
"""

import dataclasses
import json
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
from pspnet.training import class_weights
from pspnet.training import extensions
from pspnet.training import initial_weights
from pspnet.training import loader
from pspnet.training import mixed16
from pspnet.training import optimizer as optimizer_module
from pspnet.training import output
from pspnet.training import randomness
from pspnet.training import replicas
from pspnet.training import snapshots
from pspnet.training.train_chain import TrainChain
from pspnet.training.updater import CollectiveUpdater

#: Settings a resumed run must share with the run it continues: they
#: decide what is trained (``class_weights`` are the weights the run used,
#: median-frequency ones as computed from the labels). The process count
#: is the snapshot's.
RUN_IDENTITY = ('dataset', 'model', 'crop_size', 'batchsize', 'iteration',
                'seed', 'n_class', 'n_train', 'dtype', 'class_weights')
#: Settings that may change when a run is resumed; ``config.json``'s record
#: of the resume names those that changed, with the values before and
#: after. ``lr`` is the base of the polynomial schedule from the resumed
#: iteration on (lowered after a divergence, say); ``data_dir`` may move
#: (``n_train`` is checked); ``communicator``, ``device_kind`` and
#: ``tf32`` change how the sums are computed, not what is trained; the
#: intervals, the snapshots kept, the loader count and the progress bar
#: change nothing in the weights.
RESUME_RECORDED = ('lr', 'data_dir', 'communicator', 'device_kind', 'tf32',
                   'loaderjob', 'snapshot_interval', 'keep_snapshots',
                   'val_interval', 'log_interval', 'progress')
#: Options a resumed run does not use: the snapshot holds the weights
#: (``config.json`` keeps the run's), ``--device`` is recorded as the
#: ``device_kind`` it chose, ``--class-weight`` as ``class_weights``, and
#: ``config.json``'s ``out`` follows the run.
RESUME_UNUSED = ('pretrained_model', 'device', 'class_weight', 'out',
                 'resume')

#: The power of the polynomial learning-rate schedule.
LR_POWER = 0.9

CONFIG_FILE = output.CONFIG_FILE
FINAL_MODEL_FILE = output.FINAL_MODEL_FILE
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
    weight = config.get('class_weight')
    if weight is not None and weight != class_weights.MEDIAN:
        config['class_weight'] = list(class_weights.check_class_weights(
            weight, '--class-weight', spec.n_class))
    config.setdefault('dtype', 'float32')
    mixed16.check_training_dtype(config['dtype'])
    return config


def validation_points(config):
    """Iterations after which the validation runs: every
    ``val_interval`` and at the end."""
    n_iter = config['iteration']
    step = config['val_interval']
    points = set(range(step, n_iter + 1, step)) if step else set()
    points.add(n_iter)
    return sorted(points)


def _describe_class_weights(weights, given):
    if weights is None:
        return 'no --class-weight'
    return '--class-weight {} ({})'.format(
        class_weights.MEDIAN if given == class_weights.MEDIAN else 'FILE',
        ', '.join('{:.6g}'.format(w) for w in weights))


def _check_resume_config(config, saved, where):
    """Refuse a resume whose identity settings (:data:`RUN_IDENTITY`)
    differ from the saved run's; settings ``config`` does not hold yet are
    checked in a later call."""
    if 'class_weights' in config and 'n_class' in saved:
        # Older runs without class weights trained with none.
        saved = dict(saved, class_weights=saved.get('class_weights'))
    differing = [key for key in RUN_IDENTITY
                 if key in saved and key in config
                 and saved[key] != config[key]]
    if not differing:
        return
    if differing == ['n_train']:
        raise UserError(
            'the run in {} trained on {} images but --data-dir {} holds {}; '
            'resume with the dataset of that run'.format(
                where, saved['n_train'], config['data_dir'],
                config['n_train']))
    used = []
    for key in differing:
        if key == 'class_weights':
            used.append(_describe_class_weights(
                saved['class_weights'], saved.get('class_weight')))
        elif key not in ('n_class', 'n_train'):
            used.append('--{} {}'.format(key.replace('_', '-'), saved[key]))
    now = ''
    if differing == ['class_weights'] and config['class_weights'] is not None:
        now = ', not {}'.format(_describe_class_weights(
            config['class_weights'], config.get('class_weight')))
    raise UserError(
        'the run in {} used {}{}; resume with the same options, or start a '
        'new run with another --out'.format(where, ', '.join(used), now))


def _settings_before(saved):
    """The :data:`RESUME_RECORDED` settings of a saved run as its last part
    used them: its configuration, changed by its earlier resumes."""
    settings = {key: saved.get(key) for key in RESUME_RECORDED}
    for record in saved.get('resumed', []):
        if 'lr' in record:
            settings['lr'] = record['lr']
        for key, change in record.get('changed', {}).items():
            settings[key] = change['after']
    return settings


def _resolve_class_weights(config, totals, s):
    """The class weights of the run into ``config['class_weights']`` (the
    median-frequency ones from the summed label counts ``totals``), and on
    resume their check against the saved run's. Every process computes
    the same (run it under :func:`pspnet.mpi.agree`)."""
    weight = config.get('class_weight')
    if weight == class_weights.MEDIAN:
        weight = class_weights.median_frequency_weights(totals)
    config['class_weights'] = None if weight is None else list(weight)
    if s.saved_config is not None:
        _check_resume_config(dict(config, n_train=len(s.train)),
                             s.saved_config, s.saved_where)


def _load_saved_config(out):
    path = os.path.join(out, CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            saved = json.load(f)
    except (ValueError, OSError) as e:
        raise UserError('{} is unreadable or corrupt ({}); delete it to '
                        'resume without the configuration check'.format(
                            path, e))
    if not isinstance(saved, dict):
        raise UserError('{} is not a run configuration; delete it to resume '
                        'without the configuration check'.format(path))
    return saved


@dataclasses.dataclass
class _Setup:
    """What the setup of one process builds (:func:`_prepare`) for the
    trainer (:func:`_build_trainer`) and the records of the run.

    Attributes:
        device: This process's Chainer device.
        speed_lines (list of str): What the start line says of it.
        resume_path (str or None): The snapshot resumed from.
        resume_iteration (int or None): Its iteration.
        saved_config (dict or None): The run's ``config.json`` on resume.
        saved_where (str or None): The folder it was read from.
        resume_changes (dict or None): The recorded options that changed on
            resume (rank 0, once ``config.json`` is written).
        run_id (str): The run's id.
        train, val: The training and validation datasets.
        label_totals (numpy.ndarray or None): This process's label pixel
            counts per class.
        initial_weights (str): What the model started from.
        warnings (list of str): Warnings of the initial weights.
        aux: The auxiliary head's plan (:mod:`.initial_weights`).
        model (pspnet.PSPNet): The model.
        train_chain (TrainChain): The model with its losses.
    """

    device: object = None
    speed_lines: list = None
    resume_path: str = None
    resume_iteration: int = None
    saved_config: dict = None
    saved_where: str = None
    resume_changes: dict = None
    run_id: str = None
    train: object = None
    val: object = None
    label_totals: object = None
    initial_weights: str = None
    warnings: list = dataclasses.field(default_factory=list)
    aux: object = None
    model: object = None
    train_chain: object = None


def _prepare(config, kind, comm, folder):
    """Process-local setup and checks, which may fail (checked by every
    process); only rank 0 touches the output folder (``folder``), and
    nothing is written but its lock."""
    s = _Setup()
    s.device = device.process_device(kind, comm)
    s.speed_lines = device.speed_setup(
        s.device.device.id if kind == 'gpu' else None,
        config.get('tf32', False))
    out = config['out']
    if folder is not None:
        folder.check_writable()
    s.resume_path = snapshots.resolve_resume(config['resume'], out)
    if folder is not None:
        folder.open(fresh=s.resume_path is None)
    if s.resume_path is not None:
        info = snapshots.check_snapshot(s.resume_path)
        if info['n_processes'] != comm.size:
            raise UserError(
                'the snapshot {} was written by {} processes but {} are '
                'running; resume with mpiexec -n {}'.format(
                    s.resume_path, info['n_processes'], comm.size,
                    info['n_processes']))
        s.saved_where = out
        s.saved_config = _load_saved_config(out)
        if s.saved_config is None:
            # Continuing another folder's run into a new --out.
            s.saved_where = os.path.dirname(os.path.abspath(s.resume_path))
            s.saved_config = _load_saved_config(s.saved_where)
        saved_id = (s.saved_config or {}).get('run_id')
        if saved_id and info['run_id'] and saved_id != info['run_id']:
            raise UserError(
                'the snapshot {} belongs to another run than the one in {} '
                '(run ids {} and {}); resume that run with --resume alone, or '
                'continue the snapshot\'s run with its own folder as --out'
                .format(s.resume_path, s.saved_where, info['run_id'],
                        saved_id))
        s.run_id = saved_id or info['run_id']
        if s.saved_config is not None:
            _check_resume_config(config, s.saved_config, s.saved_where)
        s.resume_iteration = info['iteration']
    if s.run_id is None:
        s.run_id = snapshots.new_run_id()

    spec = registry.lookup(config['dataset'])
    s.train = spec.get(spec.train_split, config['data_dir'])
    s.val = spec.get('val', config['data_dir'])
    if s.saved_config is not None:
        _check_resume_config(dict(config, n_train=len(s.train)),
                             s.saved_config, s.saved_where)
    # Every process checks its part of the label files' headers.
    for dataset in (s.train, s.val):
        loader.check_label_files(
            dataset, range(comm.rank, len(dataset), comm.size))
    # Label values are checked up front (described datasets, cached), and
    # counted for median-frequency weights; each process does its share.
    if (hasattr(s.train, 'check_labels')
            or config.get('class_weight') == class_weights.MEDIAN):
        s.label_totals = class_weights.count_pixels(
            s.train, mpi.local_block(len(s.train), comm))
    if hasattr(s.val, 'check_labels'):
        s.val.check_labels(mpi.local_block(len(s.val), comm))

    # New layers (pyramid pooling, heads) start from the run's seed.
    with randomness.seeded_numpy(config['seed'], randomness.INITIALIZATION):
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
    with randomness.seeded_numpy(config['seed'], randomness.INITIALIZATION,
                                 1):
        s.train_chain = TrainChain(model, aux_channels=s.aux.channels,
                                   aux_ksize=s.aux.ksize)
    s.aux.load_into(s.train_chain)
    return s


def _build_trainer(config, s, comm):
    """Collective setup: model replicas, data shares, optimizer, trainer."""
    out = config['out']
    n_iter = config['iteration']
    is_root = comm.rank == 0

    s.train_chain.set_class_weight(config['class_weights'])
    chain = s.train_chain
    if config['dtype'] == 'mixed16':
        mixed16.to_mixed16(chain)
    train_chain = replicas.to_multi_node_batch_normalization(chain, comm)
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
        n_loaders, seed=config['seed'], rank=comm.rank)

    optimizer = optimizer_module.setup_optimizer(train_chain, comm,
                                                 lr=config['lr'])
    mixed16.setup_loss_scaling(optimizer, config['dtype'])
    updater = CollectiveUpdater(train_iter, optimizer, comm, config['seed'],
                                device=s.device)
    trainer = training.Trainer(updater, (n_iter, 'iteration'), out)

    trainer.extend(chainer_extensions.PolynomialShift(
        'lr', LR_POWER, n_iter, optimizer=optimizer),
        trigger=(1, 'iteration'))
    trainer.extend(extensions.StopOnNonFiniteLoss(comm, snapshot_out=out))
    if config['dtype'] == 'mixed16':
        trainer.extend(mixed16.LossScaleState(optimizer))
    if comm.size > 1:
        trainer.extend(extensions.AverageOverProcesses(comm))
    snapshot_trigger = (config['snapshot_interval'], 'iteration')
    trainer.extend(snapshots.ProcessIteratorStates(comm, train_iter,
                                                   s.run_id),
                   trigger=snapshot_trigger)
    trainer.extend(snapshots.CollectiveSnapshot(
        comm, config['keep_snapshots'],
        writer=mixed16.Float32SnapshotWriter(snapshots.AtomicWriter(),
                                               optimizer)),
        trigger=snapshot_trigger)

    points = validation_points(config)
    validator = extensions.SegmentationValidator(
        model, s.val, config['n_class'], comm)
    trainer.extend(validator, trigger=triggers.ManualScheduleTrigger(
        points, 'iteration'))
    # Right after the validator, before the log reads the observation.
    trainer.extend(extensions.BestModel(model, out, comm),
                   trigger=triggers.ManualScheduleTrigger(points, 'iteration'))
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
        '{} per process ({} in all), crop {}, {} iterations, lr {:g}, '
        '{}'.format(
            config['model'], config['dataset'], comm.size,
            kind.upper(), config['communicator'], config['batchsize'],
            config['batchsize'] * comm.size, config['crop_size'],
            config['iteration'], config['lr'], config['dtype']),
        'start: {}; {} loader process(es) per process; output in {}'.format(
            s.initial_weights, n_loaders, config['out']),
    ]
    lines.extend(s.speed_lines)
    if config.get('class_weights') is not None:
        lines.append('class weights ({}): {}'.format(
            'median frequency' if config['class_weight']
            == class_weights.MEDIAN else 'given', ', '.join(
                '{:.3g}'.format(w) for w in config['class_weights'])))
    if s.resume_path is not None:
        lines.append('resuming at iteration {} from {}{}'.format(
            s.resume_iteration, s.resume_path, ''.join(
                '; {} {} -> {}'.format(key, change['before'],
                                       change['after'])
                for key, change in sorted(
                    (s.resume_changes or {}).items()))))
    return '\n'.join(lines)


def _save_config(config, comm, kind, n_loaders, s):
    """Rank 0 writes (fresh run) or extends (resume) ``OUT/config.json``."""
    if comm.rank != 0:
        return
    atomic.remove_stale_temporaries(config['out'])
    record = dict(config)
    record.update({
        'n_processes': comm.size,
        'n_train': len(s.train),
        'device_kind': kind,
        'loaderjob': n_loaders,
        'initial_weights': s.initial_weights,
        'chainer_version': chainer.__version__,
        'run_id': s.run_id,
    })
    record.pop('resume')
    now = time.strftime('%Y-%m-%d %H:%M:%S')
    if s.resume_path is None:
        record['started'] = now
    else:
        # The run's configuration stays; each resume is added to it, with
        # the settings that changed there.
        now_used = record
        before = _settings_before(s.saved_config or {})
        record = dict(s.saved_config or record)
        record.setdefault('run_id', s.run_id)
        record['out'] = config['out']
        resume = {
            'from': s.resume_path, 'iteration': s.resume_iteration,
            'lr': config['lr'], 'n_processes': comm.size, 'time': now}
        if s.saved_config is not None:
            resume['changed'] = s.resume_changes = {
                key: {'before': before[key], 'after': now_used.get(key)}
                for key in RESUME_RECORDED
                if before[key] != now_used.get(key)}
        record['resumed'] = record.get('resumed', []) + [resume]
    path = os.path.join(config['out'], CONFIG_FILE)
    try:
        save_json_atomic(path, record)
    except OSError as e:
        raise atomic.write_error(path, e)


def _save_final(trainer, validator, config, comm):
    """Rank 0 writes the validation report and ``OUT/model_final.npz``."""
    if comm.rank != 0:
        return None
    out = config['out']
    if validator.confusion is not None:
        path = os.path.join(out, VALIDATION_FILE)
        try:
            validator.write_report(path, registry.lookup(
                config['dataset']).label_names)
        except OSError as e:
            raise atomic.write_error(path, e)
    path = os.path.join(out, FINAL_MODEL_FILE)
    # Uncompressed: trained weights shrink by a few percent only.
    # Float32 also after mixed16 (the master weights).
    try:
        save_npz_atomic(path, mixed16.float32_arrays(
            trainer.updater.get_optimizer('main').target.model),
            compression=False)
    except OSError as e:
        raise atomic.write_error(path, e)
    print('saved the trained model to {}'.format(path), flush=True)
    return path


def _load_snapshot(config, s, trainer):
    snapshots.load_snapshot(s.resume_path, trainer)
    before = _settings_before(s.saved_config or {})['lr']
    if before is not None and before != config['lr']:
        # The schedule's next value, restored from the snapshot, is the old
        # lr's: the new one rules from the resumed iteration on.
        shift = trainer.get_extension('PolynomialShift')
        shift._last_value = config['lr'] * max(
            1 - shift._t / config['iteration'], 0) ** LR_POWER
    if config['dtype'] == 'mixed16':
        mixed16.restore_master_weights(
            trainer.updater.get_optimizer('main'), s.resume_path)


def _prepare_build_and_run(config, kind, comm, folder):
    is_root = comm.rank == 0
    s = mpi.agree(comm, _prepare, config, kind, comm, folder)
    totals = None
    if config.get('class_weight') == class_weights.MEDIAN:
        totals = mpi.sum_over_processes(s.label_totals, comm)
    mpi.agree(comm, _resolve_class_weights, config, totals, s)
    if is_root:
        for message in s.warnings:
            print('warning: ' + message, file=sys.stderr, flush=True)
    trainer, validator, n_loaders = _build_trainer(config, s, comm)
    if s.resume_path is not None:
        mpi.agree(comm, _load_snapshot, config, s, trainer)
    # Everything is checked: only now is anything written.
    mpi.agree(comm, _save_config, config, comm, kind, n_loaders, s)
    best_line = None
    if s.resume_path is not None:
        best = trainer.get_extension('BestModel')
        action = mpi.agree(comm, best.restore_file, s.saved_where)
        best_line = best.restored(mpi.allgather(comm, action)[0])
    if is_root:
        print(_describe(config, s, comm, kind, n_loaders), flush=True)
        if best_line:
            print(best_line, flush=True)
    optimizer_module.synchronize_start(
        trainer.updater.get_optimizer('main'), comm)
    # Errors are reported by the callers (one line for user errors).
    trainer.run(show_loop_exception_msg=False)
    return mpi.agree(comm, _save_final, trainer, validator, config, comm)


def train(options):
    """Run (or resume) a training run on every process of the MPI job.

    Args:
        options (dict): ``train_multi.py``'s options: ``dataset``,
            ``model``, ``data_dir``, ``lr``, ``batchsize``, ``out``,
            ``iteration``, ``communicator``, ``crop_size``, ``device``,
            ``pretrained_model``, ``resume``, ``snapshot_interval``,
            ``val_interval``, ``log_interval``, ``keep_snapshots``,
            ``loaderjob``, ``seed``, ``progress``, ``dtype`` (``'float32'``
            or ``'mixed16'``, :mod:`pspnet.training.mixed16`), ``tf32``,
            ``class_weight`` (None, ``'median'`` or a sequence of floats).
            On resume, the options of :data:`RUN_IDENTITY` must be the
            run's; those of :data:`RESUME_RECORDED` may change and are
            recorded in ``config.json``.

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
        folder = output.OutputFolder(config['out']) if is_root else None
        try:
            path = _prepare_build_and_run(config, kind, comm, folder)
        except BaseException:
            if folder is not None:
                folder.discard()
            raise
        if folder is not None:
            folder.close()
        return path

    return mpi.run_collectively(comm, prepare_build_and_run)
