"""train_multi.py end to end: two CPU processes under mpiexec on a tiny
generated Cityscapes, a run killed after a snapshot and resumed, and the
trained model in demo.py."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import dataset_factory
from pspnet import pretrained
from pspnet.links import PSPNetResNet50
from pspnet.training import snapshots

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
N_ITER = 8
LR = 0.002
# The learnable images colour each class; an easy problem whose loss must
# fall within a few iterations even from random weights.
TRAIN_IDS = (0, 2, 8, 10)

pytestmark = pytest.mark.skipif(
    not os.path.isfile(MPIEXEC),
    reason='no mpiexec next to {} (pip install mpich)'.format(sys.executable))


def _env():
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS='1', MPLBACKEND='Agg')
    return env


def _command(data_dir, out, n_process=2, *extra):
    return [MPIEXEC, '-n', str(n_process), sys.executable,
            os.path.join(ROOT, 'train_multi.py'),
            '--dataset', 'cityscapes', '--model', 'pspnet_resnet50',
            '--data-dir', data_dir, '--out', out, '--crop-size', '64',
            '--batchsize', '2', '--iteration', str(N_ITER), '--lr', str(LR),
            '--pretrained-model', 'none', '--log-interval', '1',
            '--snapshot-interval', '4', '--val-interval', '0',
            '--no-progress'] + list(extra)


def _run(command, timeout=600):
    return subprocess.run(command, cwd=ROOT, env=_env(), timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def _log(out):
    with open(os.path.join(out, 'log')) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return dataset_factory.make_cityscapes(
        str(tmp_path_factory.mktemp('cityscapes')), n_per_city=2,
        learnable=True, train_ids=TRAIN_IDS)


@pytest.fixture(scope='module')
def finished(data_dir, tmp_path_factory):
    """An uninterrupted run, with one loader process per process."""
    out = str(tmp_path_factory.mktemp('uninterrupted'))
    result = _run(_command(data_dir, out, 2, '--loaderjob', '1'))
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def test_loss_is_finite_and_falls(finished):
    log = _log(finished[0])
    losses = [entry['main/loss'] for entry in log]
    assert [entry['iteration'] for entry in log] == list(
        range(1, N_ITER + 1))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < losses[0] - 0.5, losses


def test_learning_rate_follows_the_polynomial(finished):
    lrs = [entry['lr'] for entry in _log(finished[0])]
    expected = [LR * (1 - i / N_ITER) ** 0.9 for i in range(N_ITER)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9)


def test_both_processes_hold_identical_parameters_and_bn_statistics(
        finished):
    with open(os.path.join(finished[0], 'replica_check.json')) as f:
        check = json.load(f)
    assert check == {'n_processes': 2, 'iteration': N_ITER,
                     'params_identical': True,
                     'persistents_identical': True, 'differing': []}


def test_outputs_and_validation(finished):
    out, result = finished
    names = set(os.listdir(out))
    assert {'config.json', 'log', 'loss.png', 'lr.png', 'model_final.npz',
            'snapshot_iter_4.npz', 'snapshot_iter_8.npz'} <= names
    assert not [n for n in names if n.startswith('.tmp')]
    last = _log(out)[-1]
    for key in ('validation/main/miou', 'validation/main/mean_class_accuracy',
                'validation/main/pixel_accuracy'):
        assert 0 <= last[key] <= 1
    with open(os.path.join(out, 'config.json')) as f:
        config = json.load(f)
    assert config['n_processes'] == 2 and config['crop_size'] == 64
    assert config['communicator'] == 'naive'
    assert config['device_kind'] == 'cpu' and config['loaderjob'] == 1
    assert 'validation/main/miou' in result.stdout
    assert 'saved the trained model' in result.stdout
    # The final validation's table and figures, as the evaluation script's.
    assert 'mean IoU' in result.stdout and 'road' in result.stdout
    with open(os.path.join(out, 'validation.json')) as f:
        figures = json.load(f)
    assert figures['miou'] == pytest.approx(last['validation/main/miou'])
    assert figures['n_images'] == 6 and len(figures['iou']) == 19


def test_final_model_loads_into_pspnet_resnet50(finished):
    model = PSPNetResNet50(n_class=19, input_size=64)
    pretrained.load_npz(model, os.path.join(finished[0], 'model_final.npz'))
    img = np.random.RandomState(0).uniform(0, 255, (3, 64, 96)).astype(
        np.float32)
    label = model.predict([img])[0]
    assert label.shape == (64, 96) and label.max() < 19


def test_demo_runs_on_the_final_model(finished, data_dir, tmp_path):
    demo = os.path.join(ROOT, 'demo.py')
    if not os.path.isfile(demo):
        pytest.fail('demo.py is missing')
    image = sorted(
        os.path.join(dirpath, name)
        for dirpath, _, names in os.walk(os.path.join(data_dir, 'leftImg8bit'))
        for name in names)[0]
    prefix = str(tmp_path / 'demo')
    result = _run([sys.executable, demo, '--model', 'pspnet_resnet50',
                   '--pretrained-model',
                   os.path.join(finished[0], 'model_final.npz'),
                   '--input-size', '64', '--output', prefix, image])
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.path.isfile(prefix + '_label.png')


def test_killed_run_resumes_to_the_same_end(finished, data_dir,
                                            tmp_path_factory):
    out = str(tmp_path_factory.mktemp('killed'))
    snapshot = os.path.join(out, 'snapshot_iter_4.npz')
    # Loading in the training processes (--loaderjob 0) this time.
    process = subprocess.Popen(
        _command(data_dir, out, 2, '--loaderjob', '0'), cwd=ROOT,
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        deadline = time.time() + 600
        while not os.path.exists(snapshot) and process.poll() is None:
            assert time.time() < deadline, 'no snapshot in 10 minutes'
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert os.path.exists(snapshot)
    assert not os.path.exists(os.path.join(out, 'model_final.npz')), (
        'the run ended before it could be killed')
    assert snapshots.check_snapshot(snapshot)['iteration'] == 4

    result = _run(_command(data_dir, out, 2, '--loaderjob', '0',
                           '--resume'))
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'resuming at iteration 4' in result.stdout
    resumed, uninterrupted = _log(out), _log(finished[0])
    assert [e['iteration'] for e in resumed] == [
        e['iteration'] for e in uninterrupted] == list(range(1, N_ITER + 1))
    np.testing.assert_allclose([e['lr'] for e in resumed],
                               [e['lr'] for e in uninterrupted], rtol=1e-12)
    assert snapshots.check_snapshot(os.path.join(
        out, 'snapshot_iter_8.npz')) == {'iteration': N_ITER,
                                         'n_processes': 2}
    with open(os.path.join(out, 'replica_check.json')) as f:
        assert json.load(f)['params_identical']
    with open(os.path.join(out, 'config.json')) as f:
        config = json.load(f)
    assert [r['iteration'] for r in config['resumed']] == [4]

    # Other settings or another process count cannot continue this run.
    result = _run(_command(data_dir, out, 2, '--batchsize', '1',
                           '--resume'))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'error: the run in {} used --batchsize 2; resume with the same '
        'options, or start a new run with another --out'.format(out)]
    result = _run(_command(data_dir, out, 1, '--resume',
                           os.path.join(out, 'snapshot_iter_4.npz')))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        'error: the snapshot {} was written by 2 processes but 1 are '
        'running; resume with mpiexec -n 2'.format(
            os.path.join(out, 'snapshot_iter_4.npz')))


def test_resume_without_snapshot_is_one_error_line(data_dir, tmp_path):
    result = _run(_command(data_dir, str(tmp_path), 2, '--resume'))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ['error: no snapshot_iter_*.npz in {} to resume from; '
                     'start without --resume, or pass --resume PATH to a '
                     'snapshot'.format(tmp_path)]
