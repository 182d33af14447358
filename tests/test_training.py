"""Training parts in one process: loss, heads, optimizer rules, BN
conversion, learning-rate schedule, snapshots, initial weights."""

import copy
import json
import os
import warnings

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
import pytest
from chainer import training
from chainer.training import extensions as chainer_extensions

from pspnet import pretrained
from pspnet import atomic
from pspnet import mpi
from pspnet.errors import UserError
from pspnet.links import PSPNetResNet50
from pspnet import device
from pspnet.training import replicas
from pspnet.training import extensions
from pspnet.training import initial_weights
from pspnet.training import loader
from pspnet.training import output
from pspnet.training import randomness
from pspnet.training import optimizer as optimizer_module
from pspnet.training import run
from pspnet.training import snapshots
from pspnet.training.train_chain import TrainChain
from pspnet.training.updater import CollectiveUpdater

N_CLASS = 5
SIZE = 64


@pytest.fixture(scope='module')
def comm():
    # A one-process MPI job (MPI's singleton start), like `python
    # train_multi.py` without mpiexec.
    return mpi.create_communicator('naive')


@pytest.fixture(scope='module')
def base_model():
    # Chainer's initializers draw from NumPy's global generator: seed it so
    # that every run tests the same weights.
    np.random.seed(0)
    return PSPNetResNet50(n_class=N_CLASS, input_size=SIZE)


@pytest.fixture
def model(base_model):
    return copy.deepcopy(base_model)


def _batch(seed=0, batchsize=2):
    rng = np.random.RandomState(seed)
    x = rng.uniform(-100, 100, (batchsize, 3, SIZE, SIZE)).astype(np.float32)
    t = rng.randint(-1, N_CLASS, (batchsize, SIZE, SIZE)).astype(np.int32)
    return x, t


def test_train_chain_loss_is_finite_and_reported(model):
    chain = TrainChain(model)
    x, t = _batch()
    reporter = chainer.Reporter()
    reporter.add_observer('main', chain)
    observation = {}
    with reporter.scope(observation):
        loss = chain(x, t)
    assert loss.shape == () and np.isfinite(float(loss.array))
    values = {k: float(v.array) for k, v in observation.items()}
    assert set(values) == {'main/loss', 'main/main_loss', 'main/aux_loss'}
    assert values['main/loss'] == pytest.approx(
        values['main/main_loss'] + 0.4 * values['main/aux_loss'], rel=1e-5)
    loss.backward()
    assert chain.aux_conv1.conv.W.grad is not None
    assert chain.model.extractor.conv1_1.conv.W.grad is not None


def test_heads_output_logits_at_input_size(model):
    chain = TrainChain(model)
    x, _ = _batch()
    main, aux = chain.logits(x)
    assert main.shape == (2, N_CLASS, SIZE, SIZE)
    assert aux.shape == (2, N_CLASS, SIZE, SIZE)
    assert chain.aux_conv1.conv.W.shape == (512, 1024, 3, 3)
    assert chain.aux_conv2.W.shape == (N_CLASS, 512, 3, 3)


def test_main_head_is_the_inference_network(model):
    # In test mode dropout is the identity: the chain's main logits are the
    # link's forward, so training trains exactly what predict runs.
    chain = TrainChain(model)
    x, _ = _batch()
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        main, _ = chain.logits(x)
        expected = model(x)
    np.testing.assert_allclose(main.array, expected.array, rtol=1e-5,
                               atol=1e-5)


def test_dropout_is_active_in_training(model):
    chain = TrainChain(model)
    x, _ = _batch()
    with chainer.no_backprop_mode():
        np.random.seed(0)
        a, _ = chain.logits(x)
        np.random.seed(1)
        b, _ = chain.logits(x)
    assert not np.allclose(a.array, b.array)


def test_train_chain_keeps_the_models_parameter_tree(model, base_model):
    chain = TrainChain(model)
    assert pretrained.link_shapes(chain.model) == pretrained.link_shapes(
        base_model)
    aux = {k for k in pretrained.link_shapes(chain) if k.startswith('aux_')}
    assert aux and all(k.startswith(('aux_conv1/', 'aux_conv2/'))
                       for k in aux)


def test_loss_ignores_label_minus_one(model):
    chain = TrainChain(model)
    x, t = _batch()
    t[:, :, :SIZE // 2] = -1
    reporter = chainer.Reporter()
    reporter.add_observer('main', chain)
    observation = {}
    # Test mode: no dropout, BN running statistics; the loss is exact.
    with chainer.using_config('train', False), reporter.scope(observation):
        chain(x, t)
        main, aux = chain.logits(x)
    for key, logits in (('main/main_loss', main), ('main/aux_loss', aux)):
        counted_only = F.softmax_cross_entropy(
            logits[:, :, :, SIZE // 2:], t[:, :, SIZE // 2:])
        assert float(observation[key].array) == pytest.approx(
            float(counted_only.array), rel=1e-4)


def _batch_normalizations(link):
    from chainermn.links import MultiNodeBatchNormalization
    return [(name, l) for name, l in link.namedlinks()
            if isinstance(l, (L.BatchNormalization,
                              MultiNodeBatchNormalization))]


def test_bn_conversion_keeps_values_and_npz_keys(model, comm, tmp_path):
    from chainermn.links import MultiNodeBatchNormalization
    chain = TrainChain(model)
    rng = np.random.RandomState(0)
    for _, bn in _batch_normalizations(chain):
        for array in (bn.gamma.array, bn.beta.array, bn.avg_mean,
                      bn.avg_var):
            array[...] = rng.uniform(0.5, 1.5, array.shape)
        bn.N = 7
    before = chainer.serializers.DictionarySerializer()
    before.save(chain)

    converted = replicas.to_multi_node_batch_normalization(chain, comm)
    bns = _batch_normalizations(converted)
    assert len(bns) == len(_batch_normalizations(chain)) == 61
    assert all(isinstance(bn, MultiNodeBatchNormalization) for _, bn in bns)
    after = chainer.serializers.DictionarySerializer()
    after.save(converted)
    assert sorted(before.target) == sorted(after.target)
    for key, value in before.target.items():
        np.testing.assert_array_equal(value, after.target[key], err_msg=key)

    # The model part saves the plain link's keys: it loads strictly.
    path = str(tmp_path / 'model.npz')
    atomic.save_npz_atomic(path, converted.model, compression=False)
    fresh = PSPNetResNet50(n_class=N_CLASS, input_size=SIZE)
    pretrained.load_npz(fresh, path)
    np.testing.assert_array_equal(
        fresh.extractor.res3.a.conv1.bn.avg_var,
        converted.model.extractor.res3.a.conv1.bn.avg_var)


def test_multi_node_bn_normalizes_like_bn_in_one_process(model, comm):
    chain = TrainChain(model)
    converted = replicas.to_multi_node_batch_normalization(
        copy.deepcopy(chain), comm)
    x, _ = _batch()
    with chainer.no_backprop_mode():
        np.random.seed(0)
        a, _ = chain.logits(x)
        np.random.seed(0)
        b, _ = converted.logits(x)
    np.testing.assert_allclose(a.array, b.array, rtol=1e-3, atol=1e-3)


def test_weight_decay_skips_bn_and_new_layers_learn_ten_times_faster(
        model, comm):
    chain = replicas.to_multi_node_batch_normalization(TrainChain(model),
                                                          comm)
    lr = 0.1
    optimizer = optimizer_module.setup_optimizer(chain, comm, lr=lr,
                                                 weight_decay=1e-2)
    optimizer_module.synchronize_start(optimizer, comm)
    for bn in (chain.model.extractor.conv1_1.bn, chain.model.ppm[0].bn):
        bn.gamma.array[...] = 2.0
        bn.beta.array[...] = 0.5
    before = {name: p.array.copy() for name, p in chain.namedparams()}
    for param in chain.params():
        param.grad = np.zeros_like(param.array)
    optimizer.update()  # zero gradients: only the weight decay acts
    after = {name: p.array for name, p in chain.namedparams()}

    def shrink(name):
        ratio = after[name] / before[name]
        assert np.allclose(ratio, ratio.flat[0], rtol=1e-4), name
        return 1 - ratio.flat[0]

    assert shrink('/model/extractor/res4/a/conv2/conv/W') == pytest.approx(
        lr * 1e-2, rel=1e-3)
    for name in ('/model/ppm/0/conv/W', '/model/head_conv1/conv/W',
                 '/model/head_conv2/W', '/aux_conv1/conv/W',
                 '/aux_conv2/W'):
        assert shrink(name) == pytest.approx(10 * lr * 1e-2, rel=1e-3), name
    for name in before:
        if name.endswith(('/gamma', '/beta')):
            np.testing.assert_array_equal(before[name], after[name], name)


def test_gradient_scaling_scales_gradients(model, comm):
    chain = replicas.to_multi_node_batch_normalization(TrainChain(model),
                                                          comm)
    optimizer = optimizer_module.setup_optimizer(chain, comm, lr=0.1,
                                                 weight_decay=0)
    optimizer_module.synchronize_start(optimizer, comm)
    W = chain.model.extractor.conv1_1.conv.W
    b = chain.model.head_conv2.b
    W0, b0 = W.array.copy(), b.array.copy()
    for param in chain.params():
        param.grad = np.zeros_like(param.array)
    W.grad[...] = 1
    b.grad[...] = 1
    optimizer.update()
    np.testing.assert_allclose(W0 - W.array, 0.1, rtol=1e-5)
    np.testing.assert_allclose(b0 - b.array, 1.0, rtol=1e-5)


class _Regression(chainer.Chain):
    def __init__(self):
        super(_Regression, self).__init__()
        with self.init_scope():
            self.linear = L.Linear(3, 1)

    def forward(self, x, t):
        # Dropout draws from the global generator, which the updater seeds.
        loss = F.mean_squared_error(self.linear(F.dropout(x, 0.2)), t)
        if float(x[0, 0]) > 1000:
            loss = loss * np.float32('nan')
        chainer.report({'loss': loss}, self)
        return loss


def _jitter(pair, rng):
    x, t = pair
    return (x + rng.normal(0, 0.01, x.shape)).astype(np.float32), t


def _tiny_trainer(comm, out, n_iter, snapshot_every, lr=0.5, seed=0):
    rng = np.random.RandomState(0)
    xs = rng.uniform(0, 1, (10, 3)).astype(np.float32)
    ts = xs.sum(axis=1, keepdims=True)
    # The run's streams: shuffled epochs, jittered samples, dropout; a
    # resumed run must equal an uninterrupted one bit for bit.
    iterator = chainer.iterators.SerialIterator(
        loader.AugmentedDataset(chainer.datasets.TupleDataset(xs, ts),
                                _jitter, seed),
        3, order_sampler=randomness.EpochOrderSampler(seed))
    optimizer = chainer.optimizers.MomentumSGD(lr)
    with randomness.seeded_numpy(seed, randomness.INITIALIZATION):
        optimizer.setup(_Regression())
    updater = CollectiveUpdater(iterator, optimizer, comm, seed)
    trainer = training.Trainer(updater, (n_iter, 'iteration'), str(out))
    trainer.extend(chainer_extensions.PolynomialShift(
        'lr', 0.9, n_iter, optimizer=optimizer), trigger=(1, 'iteration'))
    trainer.extend(extensions.StopOnNonFiniteLoss(comm,
                                                  snapshot_out=str(out)))
    trainer.extend(snapshots.ProcessIteratorStates(
        comm, iterator, run_id='0123456789abcdef'[:snapshots.RUN_ID_DIGITS]),
        trigger=(snapshot_every, 'iteration'))
    trainer.extend(snapshots.CollectiveSnapshot(comm, 2),
                   trigger=(snapshot_every, 'iteration'))
    trainer.extend(chainer_extensions.LogReport(trigger=(1, 'iteration')))
    trainer.extend(chainer_extensions.observe_lr(), trigger=(1, 'iteration'))
    return trainer


def _log(out):
    with open(os.path.join(str(out), 'log')) as f:
        return json.load(f)


def test_learning_rate_is_polynomial_every_iteration(comm, tmp_path):
    n_iter = 10
    _tiny_trainer(comm, tmp_path, n_iter, 100, lr=0.5).run()
    lrs = [entry['lr'] for entry in _log(tmp_path)]
    expected = [0.5 * (1 - i / n_iter) ** 0.9 for i in range(n_iter)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9)


class _Crashed(Exception):
    pass


class _Crash(chainer.training.Extension):
    def __call__(self, trainer):
        raise _Crashed()


def test_resume_continues_schedule_iterator_and_weights(comm, tmp_path):
    n_iter = 9
    whole = _tiny_trainer(comm, tmp_path / 'whole', n_iter, 4)
    whole.run()

    first = _tiny_trainer(comm, tmp_path / 'part', n_iter, 4)
    first.extend(_Crash(), trigger=(6, 'iteration'))
    with pytest.raises(_Crashed):
        first.run()  # after the snapshot of iteration 4
    snapshot = snapshots.find_latest_snapshot(str(tmp_path / 'part'))
    assert snapshots.snapshot_iteration(snapshot) == 4
    assert snapshots.check_snapshot(snapshot) == {
        'iteration': 4, 'n_processes': 1, 'run_id': '0123456789abcde'}
    resumed = _tiny_trainer(comm, tmp_path / 'part', n_iter, 4)
    snapshots.load_snapshot(snapshot, resumed)
    resumed.run()

    assert resumed.updater.iteration == n_iter
    whole_log = _log(tmp_path / 'whole')
    resumed_log = _log(tmp_path / 'part')
    assert [e['iteration'] for e in resumed_log] == list(range(1, n_iter + 1))
    np.testing.assert_allclose([e['lr'] for e in resumed_log],
                               [e['lr'] for e in whole_log], rtol=1e-12)
    assert ([e['main/loss'] for e in resumed_log]
            == [e['main/loss'] for e in whole_log])
    for name in ('W', 'b'):
        whole_param = getattr(whole.updater.get_optimizer(
            'main').target.linear, name).array
        resumed_param = getattr(resumed.updater.get_optimizer(
            'main').target.linear, name).array
        assert whole_param.tobytes() == resumed_param.tobytes()
    # Another seed is another run.
    other = _tiny_trainer(comm, tmp_path / 'other', n_iter, 100, seed=1)
    other.run()
    assert [e['main/loss'] for e in _log(tmp_path / 'other')] != [
        e['main/loss'] for e in whole_log]
    # Only the newest snapshots are kept.
    names = sorted(os.listdir(str(tmp_path / 'whole')))
    assert [n for n in names if n.startswith('snapshot')] == [
        'snapshot_iter_4.npz', 'snapshot_iter_8.npz']
    assert not [n for n in names if n.startswith('.tmp')]


def test_non_finite_loss_stops_with_a_clear_message(comm, tmp_path):
    trainer = _tiny_trainer(comm, tmp_path, 30, 2, lr=0.5)
    # From iteration 5 on, every example makes the loss NaN.
    dataset = trainer.updater.get_iterator('main').dataset
    xs = dataset._dataset._datasets[0]
    trainer.extend(_Poison(xs), trigger=(5, 'iteration'))
    with pytest.raises(extensions.TrainingDiverged) as info:
        trainer.run()
    message = str(info.value)
    assert 'NaN or infinite at iteration' in message
    assert 'snapshot_iter_' in message and '--resume' in message
    assert isinstance(info.value, UserError)


class _Poison(chainer.training.Extension):
    def __init__(self, xs):
        self.xs = xs

    def __call__(self, trainer):
        self.xs[:, 0] = 10000


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    path = str(tmp_path / 'model.npz')

    def failing(f):
        f.write(b'partial')
        raise RuntimeError('disk full')

    with pytest.raises(RuntimeError):
        atomic.write_atomic(path, failing)
    assert os.listdir(str(tmp_path)) == []
    atomic.save_json_atomic(str(tmp_path / 'a.json'), {'x': 1})
    assert json.load(open(str(tmp_path / 'a.json'))) == {'x': 1}
    assert oct(os.stat(str(tmp_path / 'a.json')).st_mode & 0o777) != '0o600'


def test_resume_path_resolution(tmp_path):
    out = str(tmp_path)
    with pytest.raises(UserError, match='no snapshot_iter'):
        snapshots.resolve_resume('latest', out)
    with pytest.raises(UserError, match='does not exist'):
        snapshots.resolve_resume(str(tmp_path / 'nope.npz'), out)
    assert snapshots.resolve_resume(None, out) is None
    for n in (2, 10, 9):
        open(os.path.join(out, 'snapshot_iter_{}.npz'.format(n)), 'w').close()
    open(os.path.join(out, 'snapshot_iter_x.npz'), 'w').close()
    assert snapshots.resolve_resume('latest', out).endswith(
        'snapshot_iter_10.npz')


def test_corrupt_or_foreign_snapshot_is_a_user_error(tmp_path):
    corrupt = str(tmp_path / 'snapshot_iter_3.npz')
    with open(corrupt, 'wb') as f:
        f.write(b'PK\x03\x04garbage')
    with pytest.raises(UserError, match='corrupt'):
        snapshots.check_snapshot(corrupt)
    foreign = str(tmp_path / 'other.npz')
    np.savez(foreign, a=np.zeros(2))
    with pytest.raises(UserError, match='not a trainer snapshot'):
        snapshots.check_snapshot(foreign)


def _options(**changes):
    options = dict(
        dataset='cityscapes', model='pspnet_resnet50', data_dir='auto',
        lr=1e-2, batchsize=2, out='result', iteration=None,
        communicator=None, crop_size=None, device='cpu',
        pretrained_model='imagenet', resume=None, snapshot_interval=2000,
        keep_snapshots=3, val_interval=10000, log_interval=10,
        loaderjob=None, seed=0, progress=True)
    options.update(changes)
    return options


def test_presets_and_overrides():
    config = run.resolve_config(_options())
    assert (config['crop_size'], config['iteration'], config['n_class']) == (
        713, 90000, 19)
    config = run.resolve_config(_options(dataset='ade20k'))
    assert (config['crop_size'], config['iteration'], config['n_class']) == (
        473, 150000, 150)
    config = run.resolve_config(_options(crop_size=64, iteration=8))
    assert (config['crop_size'], config['iteration']) == (64, 8)
    assert run.validation_points(dict(config, val_interval=3)) == [3, 6, 8]
    assert run.validation_points(dict(config, val_interval=0)) == [8]


@pytest.mark.parametrize('flags,message', [
    (['--crop-size', '32'], 'too small'),
    (['--crop-size', 'x'], '--crop-size'),
    (['--batchsize', '0'], '--batchsize'),
    (['--lr', '0.0'], '--lr'),
    (['--lr', 'nan'], '--lr'),
    (['--val-interval', '-1'], '--val-interval'),
    (['--loaderjob', '-1'], '--loaderjob'),
    (['--dataset', 'mnist'], 'unknown dataset'),
])
def test_bad_options_are_one_line_errors(flags, message, capsys):
    import train_multi
    argv = ['--dataset', 'cityscapes', '--model', 'pspnet_resnet50'] + flags
    with pytest.raises(SystemExit) as info:
        train_multi.parse_args(argv)
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ')
    assert message in lines[0]


def test_resolve_config_refuses_datasets_without_recipe(monkeypatch):
    from pspnet.datasets import registry
    monkeypatch.setitem(registry.DATASETS, 'voc',
                        registry.DATASETS['voc']._replace(iterations=None))
    with pytest.raises(UserError, match='no training recipe'):
        run.resolve_config(_options(dataset='voc'))


def test_resolve_config_voc_is_pspnets_recipe():
    config = run.resolve_config(_options(dataset='voc'))
    assert (config['crop_size'], config['iteration'], config['n_class']) \
        == (473, 30000, 21)


def test_communicator_choice():
    assert mpi.choose_communicator('cpu') == 'naive'
    assert mpi.choose_communicator('gpu') == 'pure_nccl'
    assert mpi.choose_communicator('gpu', 'naive') == 'naive'
    with pytest.raises(UserError, match='needs GPUs'):
        mpi.choose_communicator('cpu', 'pure_nccl')
    assert device.choose_device_kind('cpu') == 'cpu'
    if not chainer.backends.cuda.available:
        assert device.choose_device_kind('auto') == 'cpu'
        with pytest.raises(UserError, match='--device cpu'):
            device.choose_device_kind('gpu')


def test_replica_check_in_one_process(model, comm):
    result = replicas.compare_replicas(comm, model)
    assert result == {'n_processes': 1, 'params_identical': True,
                      'persistents_identical': True, 'differing': []}


# Initial weights ---------------------------------------------------------

@pytest.fixture(scope='module')
def weight_files(base_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp('weights')
    trained = copy.deepcopy(base_model)
    for param in trained.params():
        param.array[...] += 0.5
    files = {'extractor': str(folder / 'extractor.npz'),
             'pspnet': str(folder / 'pspnet.npz'),
             'other_classes': str(folder / 'pspnet_7.npz')}
    chainer.serializers.save_npz(files['extractor'], trained.extractor,
                                 compression=False)
    chainer.serializers.save_npz(files['pspnet'], trained, compression=False)
    other = PSPNetResNet50(n_class=7, input_size=SIZE)
    other.extractor.copyparams(trained.extractor)
    other.ppm.copyparams(trained.ppm)
    other.head_conv1.copyparams(trained.head_conv1)
    chainer.serializers.save_npz(files['other_classes'], other,
                                 compression=False)
    return trained, files


def test_extractor_file_loads_into_the_extractor(model, weight_files):
    trained, files = weight_files
    head = model.head_conv1.conv.W.array.copy()
    what = initial_weights.load_initial_weights(model, files['extractor'])
    assert 'extractor' in what
    np.testing.assert_array_equal(model.extractor.res4.b5.conv3.conv.W.array,
                                  trained.extractor.res4.b5.conv3.conv.W.array)
    np.testing.assert_array_equal(model.head_conv1.conv.W.array, head)


def test_pspnet_file_loads_whole_or_all_but_the_classifier(
        model, weight_files):
    trained, files = weight_files
    initial_weights.load_initial_weights(model, files['pspnet'])
    np.testing.assert_array_equal(model.head_conv2.W.array,
                                  trained.head_conv2.W.array)
    fresh = PSPNetResNet50(n_class=N_CLASS, input_size=SIZE)
    classifier = fresh.head_conv2.W.array.copy()
    what = initial_weights.load_initial_weights(fresh,
                                                files['other_classes'])
    assert 'without its 7-class classifier' in what
    np.testing.assert_array_equal(fresh.head_conv1.conv.W.array,
                                  trained.head_conv1.conv.W.array)
    np.testing.assert_array_equal(fresh.head_conv2.W.array, classifier)


def test_none_warns_and_bad_files_are_user_errors(model, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        initial_weights.load_initial_weights(model, 'none')
    assert any('from scratch' in str(w.message) for w in caught)
    with pytest.raises(UserError, match='does not exist'):
        initial_weights.load_initial_weights(model, str(tmp_path / 'x.npz'))
    foreign = str(tmp_path / 'foreign.npz')
    np.savez(foreign, a=np.zeros(2))
    with pytest.raises(UserError, match='neither a ResNet extractor'):
        initial_weights.load_initial_weights(model, foreign)


def test_validator_matches_the_plain_models_evaluation(model, comm):
    from pspnet import evaluations
    rng = np.random.RandomState(0)
    for _, bn in _batch_normalizations(model):
        bn.avg_mean[...] = rng.uniform(-0.1, 0.1, bn.avg_mean.shape)
        bn.avg_var[...] = rng.uniform(0.5, 1.5, bn.avg_var.shape)
    dataset = [(rng.uniform(0, 255, (3, 64, 80)).astype(np.float32),
                rng.randint(-1, N_CLASS, (64, 80)).astype(np.int32))
               for _ in range(2)]
    plain = copy.deepcopy(model)
    plain.fast_inference = False
    expected = evaluations.evaluate_model(plain, dataset, range(2), N_CLASS)

    chain = replicas.to_multi_node_batch_normalization(TrainChain(model),
                                                          comm)
    validator = extensions.SegmentationValidator(chain.model, dataset,
                                                 N_CLASS, comm)
    metrics = validator.evaluate()
    # The same labels, but for the odd pixel whose two best classes tie
    # within float rounding (predict may take another arithmetic path).
    assert validator.confusion.sum() == expected.sum()
    assert np.abs(validator.confusion - expected).sum() <= 2 * 0.001 * (
        expected.sum())
    assert metrics['miou'] == pytest.approx(
        evaluations.semantic_segmentation_metrics(expected)['miou'],
        abs=0.01)


# --- Random streams, loaders, output folder, snapshot checks ---------------

@pytest.mark.parametrize('n', [1, 2, 7, 30])
def test_epoch_order_is_a_function_of_seed_rank_and_epoch(n):
    sampler = randomness.EpochOrderSampler(seed=5, rank=1)
    order = sampler(np.arange(n), 0)
    chain = []
    for epoch in range(6):
        decoded = [randomness.decode_draw(d, n) for d in order]
        assert {e for e, _ in decoded} == {epoch}
        assert sorted(i for _, i in decoded) == list(range(n))
        chain.append(order)
        # A fresh sampler (a resumed run) continues from the order alone.
        assert np.array_equal(randomness.EpochOrderSampler(5, 1)(order, n),
                              sampler(order, 0))
        order = sampler(order, n)
    if n >= 7:
        assert len({tuple(o % n) for o in chain}) > 1
        assert not np.array_equal(
            randomness.EpochOrderSampler(6, 1)(np.arange(n), 0) % n,
            chain[0] % n) or not np.array_equal(
            randomness.EpochOrderSampler(5, 0)(np.arange(n), 0) % n,
            chain[0] % n)


def _pairs(n, size=(40, 56), seed=0):
    rng = np.random.RandomState(seed)
    return [(rng.uniform(0, 255, (3,) + size).astype(np.float32),
             rng.randint(-1, 5, size).astype(np.int32)) for _ in range(n)]


def _batches(iterator, count):
    out = []
    for _ in range(count):
        out.append([(img.tobytes(), label.tobytes())
                    for img, label in iterator.next()])
    return out


@pytest.mark.parametrize('n,batchsize', [(5, 2), (3, 4), (6, 3)])
def test_batches_do_not_depend_on_the_loader_nor_on_a_resume(n, batchsize):
    from pspnet.links.pspnet import IMAGENET_MEAN
    pairs = _pairs(n)
    serial = loader.training_iterator(pairs, IMAGENET_MEAN, (32, 32),
                                      batchsize, 0, seed=3, rank=1)
    expected = _batches(serial, 7)
    workers = loader.training_iterator(pairs, IMAGENET_MEAN, (32, 32),
                                       batchsize, 2, seed=3, rank=1)
    try:
        assert _batches(workers, 3) == expected[:3]
        # The position as a snapshot stores it, into a fresh iterator.
        state = chainer.serializers.DictionarySerializer()
        workers.serialize(state)
        resumed = loader.training_iterator(pairs, IMAGENET_MEAN, (32, 32),
                                           batchsize, 0, seed=3, rank=1)
        resumed.serialize(chainer.serializers.NpzDeserializer(state.target))
        assert _batches(resumed, 4) == expected[3:]
    finally:
        workers.finalize()
    other = loader.training_iterator(pairs, IMAGENET_MEAN, (32, 32),
                                     batchsize, 0, seed=4, rank=1)
    assert _batches(other, 7) != expected


def test_each_sample_has_its_own_augmentation_stream():
    from pspnet.links.pspnet import IMAGENET_MEAN
    from pspnet.training.augmentation import TrainTransform
    pairs = _pairs(4)
    dataset = loader.AugmentedDataset(
        pairs, TrainTransform(IMAGENET_MEAN, (32, 32)), seed=0)
    n = len(dataset)
    first = [dataset[n + i][0].tobytes() for i in range(n)]
    # The same draw in another order, or again: the same result.
    assert [dataset[n + i][0].tobytes() for i in reversed(range(n))] == \
        first[::-1]
    # Epoch 1 augments item 0 anew.
    assert dataset[2 * n][0].tobytes() != first[0]


def test_new_layers_start_from_the_seed(model):
    state = np.random.get_state()
    weights = []
    for seed in (0, 0, 1):
        with randomness.seeded_numpy(seed, randomness.INITIALIZATION):
            chain = TrainChain(copy.deepcopy(model))
        weights.append(chain.aux_conv2.W.array.copy())
    assert weights[0].tobytes() == weights[1].tobytes()
    assert weights[0].tobytes() != weights[2].tobytes()
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1])


class _Failing(object):
    def __init__(self, pairs, bad):
        self.pairs, self.bad = pairs, bad

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        if i == self.bad:
            raise UserError('label image x.png holds the value 200')
        return self.pairs[i]


@pytest.mark.parametrize('n_loaders', [0, 1])
def test_a_loader_error_is_raised_in_the_training_process(n_loaders):
    # Chainer's MultiprocessIterator waits forever for a batch whose
    # loader process raised: the error must come back as data.
    from pspnet.links.pspnet import IMAGENET_MEAN
    iterator = loader.training_iterator(
        _Failing(_pairs(3), bad=1), IMAGENET_MEAN, (32, 32), 3, n_loaders)
    try:
        with pytest.raises(UserError, match='holds the value 200'):
            loader.raise_load_failures(iterator.next())
    finally:
        iterator.finalize()


def test_snapshot_is_checked_completely(comm, tmp_path, base_model):
    trainer = _tiny_trainer(comm, tmp_path, 4, 4)
    trainer.run()
    path = str(tmp_path / 'snapshot_iter_4.npz')
    assert snapshots.check_snapshot(path)['iteration'] == 4
    data = bytearray(open(path, 'rb').read())
    # Damage inside an array (not in the zip directory): only a CRC finds it.
    import zipfile
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo('updater/model:main/linear/W.npy')
    middle = info.header_offset + 30 + len(info.filename) + info.file_size - 4
    data[middle:middle + 4] = bytes(4 - i for i in range(4))
    damaged = str(tmp_path / 'damaged.npz')
    open(damaged, 'wb').write(bytes(data))
    snapshots.check_snapshot(damaged, complete=False)  # headers are fine
    with pytest.raises(UserError, match='CRC') as info:
        snapshots.check_snapshot(damaged)
    assert '\n' not in str(info.value)
    weights = str(tmp_path / 'weights.npz')
    chainer.serializers.save_npz(weights, base_model)
    with pytest.raises(UserError) as info:
        snapshots.check_snapshot(weights)
    assert str(info.value) == (
        '{0} holds model weights, not a training snapshot; to fine-tune '
        'from them start a new run with --pretrained-model {0}'.format(
            weights))


def test_failed_snapshot_write_is_one_line_and_leaves_nothing(
        comm, tmp_path, monkeypatch):
    import errno

    def full(file, obj, compression=True):
        file.write(b'x' * 1000)
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(atomic, 'write_npz', full)
    trainer = _tiny_trainer(comm, tmp_path, 4, 2)
    with pytest.raises(mpi.CollectiveError) as info:
        trainer.run(show_loop_exception_msg=False)
    assert str(info.value) == (
        'could not write {} (No space left on device); nothing was written; '
        'free some space on its disk'.format(
            os.path.join(str(tmp_path), 'snapshot_iter_2.npz')))
    assert not [n for n in os.listdir(str(tmp_path))
                if n.startswith('.tmp') or n.startswith('snapshot')]


def test_output_folder_holds_one_run(tmp_path):
    import fcntl
    out = str(tmp_path / 'a' / 'b')
    folder = output.OutputFolder(out)
    folder.open(fresh=True)
    # A second job cannot use it while the first holds the lock.
    with pytest.raises(UserError, match='another training run .* is using'):
        output.OutputFolder(out).open(fresh=False)
    open(os.path.join(out, 'config.json'), 'w').write('{}')
    open(os.path.join(out, 'log'), 'w').write('[]')
    folder.discard()  # failed before a snapshot: all of it goes
    assert not os.path.exists(str(tmp_path / 'a'))

    os.makedirs(out)
    open(os.path.join(out, 'mine.txt'), 'w').close()
    folder = output.OutputFolder(out)
    folder.open(fresh=True)
    for name in ('config.json', 'snapshot_iter_5.npz'):
        open(os.path.join(out, name), 'w').close()
    folder.close()
    assert sorted(os.listdir(out)) == ['config.json', 'mine.txt',
                                       'snapshot_iter_5.npz']
    with pytest.raises(UserError) as info:
        output.OutputFolder(out).open(fresh=True)
    assert str(info.value) == (
        '--out {} holds another training run (config.json, '
        'snapshot_iter_5.npz); continue it with --resume, or start this run '
        'with another --out'.format(out))
    # A refused or failed resume changes nothing there.
    folder = output.OutputFolder(out)
    folder.open(fresh=False)
    folder.discard()
    os.remove(os.path.join(out, 'snapshot_iter_5.npz'))
    folder = output.OutputFolder(out)
    folder.open(fresh=False)
    folder.discard()
    assert sorted(os.listdir(out)) == ['config.json', 'mine.txt']
    with pytest.raises(UserError, match='without a snapshot'):
        output.OutputFolder(out).open(fresh=True)
    # A lock file left by a killed run is no lock.
    fd = os.open(os.path.join(out, '.lock'), os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    with pytest.raises(UserError, match='is using'):
        output.OutputFolder(out).open(fresh=False)
    os.close(fd)
    folder = output.OutputFolder(out)
    folder.open(fresh=False)
    folder.close()
    assert not os.path.exists(os.path.join(out, '.lock'))

    a_file = str(tmp_path / 'file')
    open(a_file, 'w').close()
    for path in (a_file, os.path.join(a_file, 'sub')):
        with pytest.raises(UserError, match='is a file, not a folder'):
            output.OutputFolder(path).open(fresh=True)


def test_label_files_are_checked_from_their_headers(tmp_path):
    import cv2
    from pspnet.datasets import CityscapesSemanticSegmentationDataset
    from tests.helpers import dataset_factory
    root = dataset_factory.make_cityscapes(str(tmp_path), n_per_city=1)
    dataset = CityscapesSemanticSegmentationDataset(root, split='train')
    loader.check_label_files(dataset, range(len(dataset)))
    path = dataset.label_paths[1]
    label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    cv2.imwrite(path, label[:-3])
    with pytest.raises(UserError, match='label image {} is'.format(path)):
        loader.check_label_files(dataset, range(len(dataset)))
    loader.check_label_files(dataset, [0, 2])  # another process's part
    cv2.imwrite(path, np.dstack([label] * 3))
    with pytest.raises(UserError, match='is a RGB image'):
        loader.check_label_files(dataset, [1])


def test_one_process_errors_are_one_line():
    import errno
    line = mpi._error_line(1, OSError(errno.ENOSPC, 'No space left on device',
                                      '/out/log'))
    assert line == ('error: process 1: No space left on device (/out/log); '
                    'free some space on its disk')
    assert mpi._error_line(0, UserError('bad')) == 'error: process 0: bad'
    assert mpi._error_line(2, KeyboardInterrupt()) == \
        'process 2: interrupted'
    assert mpi._error_line(0, IndexError('x')) is None


@pytest.mark.parametrize('seed', range(4))
def test_multi_node_batch_normalization_has_no_cancellation(seed):
    # Activations large next to their spread (a pyramid bin of one pixel at
    # batch 2, early from scratch): ChainerMN's E[x^2] - E[x]^2 is rounding
    # noise there, often negative, and its output NaN; the replicas' batch
    # normalization must match the float64 two-pass statistics.
    import chainermn
    rng = np.random.RandomState(seed)
    comm = chainermn.create_communicator('naive')
    n_channel = int(rng.randint(8, 65))
    shape = (2, n_channel) + tuple(rng.randint(1, 4, size=2))
    base = rng.uniform(100, 5000, size=(1, n_channel, 1, 1))
    spread = 10.0 ** rng.uniform(-1, 0.5)
    x = (base + spread * rng.randn(*shape)).astype(np.float32)
    model = chainer.Sequential(L.BatchNormalization(n_channel, eps=1e-5))
    model = replicas.to_multi_node_batch_normalization(model, comm)
    with chainer.using_config('train', True):
        y = model(x).array
    assert np.isfinite(y).all()
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    expected = (x64 - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(y, expected, atol=2e-2, rtol=2e-2)
    # Ordinary activations: the same as Chainer's own batch normalization.
    x = rng.randn(*shape).astype(np.float32) * 3 + 1
    plain = L.BatchNormalization(n_channel, eps=1e-5)
    with chainer.using_config('train', True):
        np.testing.assert_allclose(model(x).array, plain(x).array,
                                   rtol=1e-4, atol=1e-5)


# Class weights ------------------------------------------------------------

def _bad_weight(rng):
    """A class weight outside 0 and 1e-6 to 1e6: (value for JSON, text for
    a one-number-per-line file or None)."""
    kind = rng.randint(8)
    if kind == 0:
        value = -float(10 ** rng.uniform(-9, 6))
    elif kind == 1:
        value = float(10 ** rng.uniform(6.001, 38.5))
    elif kind == 2:
        value = float(10 ** rng.uniform(-320, -6.001))
    elif kind == 3:
        value = [float('nan'), float('inf'), -float('inf')][rng.randint(3)]
    elif kind == 4:
        return 10 ** int(rng.randint(7, 400)), None  # a JSON integer
    elif kind == 5:
        return [True, 'a', None, [1.0], {'w': 1}][rng.randint(5)], None
    elif kind == 6:
        return None, ['1e400', '-0.5', '1e-7', '2e6'][rng.randint(4)]
    else:
        value = -0.0 - float(rng.randint(1, 100))
    return value, repr(value)


def _good_weight(rng):
    if rng.uniform() < 0.2:
        return 0.0
    return float(10 ** rng.uniform(-6, 6))


@pytest.mark.parametrize('seed', range(12))
def test_class_weights_outside_their_range_are_refused(seed, tmp_path):
    import argparse
    from pspnet import flags
    rng = np.random.RandomState(seed)
    n = int(rng.randint(1, 30))
    weights = [_good_weight(rng) for _ in range(n)]
    weights[rng.randint(n)] = 1.0  # not all 0
    bad_at = int(rng.randint(n))
    value, text = _bad_weight(rng)
    forms = []
    if value is not None:
        forms.append(json.dumps(weights[:bad_at] + [value]
                                + weights[bad_at + 1:]))
    if text is not None:
        forms.append(''.join('{!r}\n'.format(w) for w in weights[:bad_at])
                     + text + '\n' + ''.join(
                         '{!r}\n'.format(w) for w in weights[bad_at + 1:]))
    for i, form in enumerate(forms):
        path = str(tmp_path / 'w{}.txt'.format(i))
        with open(path, 'w') as f:
            f.write(form)
        with pytest.raises(argparse.ArgumentTypeError) as info:
            flags.class_weight(path)
        message = str(info.value)
        assert message.startswith('{}: class weight {} is '.format(
            path, bad_at)), message
        assert message.endswith('use finite numbers of at least 0: 0 leaves '
                                'the class out, others from 1e-06 to 1e+06 '
                                'keep float32 training from overflowing')
        assert '\n' not in message and len(message) < 300


@pytest.mark.parametrize('seed', range(4))
def test_class_weights_inside_their_range_are_read_exactly(seed, tmp_path):
    from pspnet import flags
    from pspnet.training import class_weights
    rng = np.random.RandomState(seed)
    weights = [_good_weight(rng) for _ in range(int(rng.randint(1, 30)))]
    weights += [class_weights.MIN_WEIGHT, class_weights.MAX_WEIGHT]
    rng.shuffle(weights)
    json_path, text_path = str(tmp_path / 'w.json'), str(tmp_path / 'w.txt')
    with open(json_path, 'w') as f:
        json.dump(weights, f)
    with open(text_path, 'w') as f:
        f.write(''.join('{!r}\n'.format(w) for w in weights))
    assert flags.class_weight(json_path) == tuple(weights)
    assert flags.class_weight(text_path) == tuple(weights)
    # A float32 loss with the largest weight on every pixel of a big batch
    # stays finite, and so does its gradient.
    logits = rng.uniform(-300, 300, (2, 3, 40, 40)).astype(np.float32)
    labels = rng.randint(0, 3, (2, 40, 40)).astype(np.int32)
    top = np.full(3, class_weights.MAX_WEIGHT, dtype=np.float32)
    x = chainer.Variable(logits)
    loss = F.softmax_cross_entropy(x, labels, class_weight=top)
    loss.backward()
    assert np.isfinite(float(loss.array)) and np.isfinite(x.grad).all()


def test_median_frequency_weights_outside_the_range_are_refused():
    from pspnet.training import class_weights
    # Class 1 has 1 pixel of 1e7 in its image: weight 0.5e7.
    totals = np.array([[5 * 10 ** 6, 1, 10 ** 6], [10 ** 7, 10 ** 7, 10 ** 6]])
    with pytest.raises(UserError) as info:
        class_weights.median_frequency_weights(totals)
    assert str(info.value).startswith(
        '--class-weight median gives class 1 the weight 5e+06 (it has '
        '1e-07 of the labelled pixels of its images')
    assert str(info.value).endswith('give them in a file instead')


# Resuming with other options ----------------------------------------------

def test_every_option_has_its_rule_on_resume():
    import train_multi
    options = vars(train_multi.parse_args(
        ['--dataset', 'cityscapes', '--model', 'pspnet_resnet50']))
    groups = [set(run.RUN_IDENTITY), set(run.RESUME_RECORDED),
              set(run.RESUME_UNUSED)]
    assert sum(len(g) for g in groups) == len(set.union(*groups))
    assert set(options) <= set.union(*groups), (
        set(options) - set.union(*groups))
    # The options in no group as themselves are there by what they give.
    assert {'class_weights', 'n_class', 'n_train'} <= groups[0]
    assert 'device_kind' in groups[1]


@pytest.mark.parametrize('new_lr', [0.1, 0.5, 2.0])
def test_a_new_learning_rate_rules_from_the_resumed_iteration(
        comm, tmp_path, new_lr):
    import types
    n_iter = 9
    first = _tiny_trainer(comm, tmp_path, n_iter, 4, lr=0.5)
    first.extend(_Crash(), trigger=(6, 'iteration'))
    with pytest.raises(_Crashed):
        first.run()
    s = types.SimpleNamespace(
        resume_path=str(tmp_path / 'snapshot_iter_4.npz'),
        saved_config={'lr': 0.5, 'resumed': []})
    resumed = _tiny_trainer(comm, tmp_path, n_iter, 4, lr=new_lr)
    run._load_snapshot({'lr': new_lr, 'iteration': n_iter,
                        'dtype': 'float32'}, s, resumed)
    resumed.run()
    lrs = [entry['lr'] for entry in _log(tmp_path)]
    expected = [(0.5 if i < 4 else new_lr) * (1 - i / n_iter) ** 0.9
                for i in range(n_iter)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
