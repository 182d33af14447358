"""train_multi.py end to end: two CPU processes under mpiexec on a tiny
generated Cityscapes, a run killed after a snapshot and resumed, and the
trained model in demo.py."""

import fcntl
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pspnet import pretrained
from pspnet.links import PSPNetResNet50
from pspnet.training import snapshots
from tests.helpers import dataset_factory

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


def _run(command, timeout=600, preexec_fn=None):
    return subprocess.run(command, cwd=ROOT, env=_env(), timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, preexec_fn=preexec_fn)


def _arrays(path):
    with np.load(path) as f:
        return {key: f[key] for key in f.files}


def _assert_bit_identical(path_a, path_b):
    a, b = _arrays(path_a), _arrays(path_b)
    assert sorted(a) == sorted(b) and len(a) > 300
    differing = [key for key in a if a[key].dtype != b[key].dtype
                 or a[key].tobytes() != b[key].tobytes()]
    assert differing == [], '{} of {} arrays differ'.format(
        len(differing), len(a))


def _state(folder):
    """Every file of a folder with its size, time and content digest."""
    state = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        with open(path, 'rb') as f:
            digest = hashlib.sha1(f.read()).hexdigest()
        stat = os.stat(path)
        state[name] = (stat.st_size, stat.st_mtime_ns, digest)
    return state


def _error_lines(result):
    """The one error line of a failed run (and no traceback)."""
    assert 'Traceback' not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith('warning: ')]
    assert len(lines) == 1, result.stderr
    return lines[0]


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


def test_two_runs_with_one_seed_end_bit_identical(finished, data_dir,
                                                  tmp_path):
    out = str(tmp_path / 'again')
    result = _run(_command(data_dir, out, 2, '--loaderjob', '1'))
    assert result.returncode == 0, result.stdout + result.stderr
    _assert_bit_identical(os.path.join(finished[0], 'model_final.npz'),
                          os.path.join(out, 'model_final.npz'))
    assert [e['main/loss'] for e in _log(out)] == [
        e['main/loss'] for e in _log(finished[0])]
    # Trained at all: the new layers moved away from their start.
    with np.load(os.path.join(out, 'model_final.npz')) as trained, np.load(
            os.path.join(out, 'snapshot_iter_4.npz')) as middle:
        key = 'head_conv2/W'
        assert trained[key].tobytes() != middle[
            'updater/model:main/model/' + key].tobytes()


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


def test_killed_run_resumes_to_the_same_end(finished, data_dir, tmp_path):
    out = str(tmp_path / 'killed')
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
        # At any moment between the snapshot and the end (maybe while the
        # next snapshot is being written).
        time.sleep(random.uniform(0, 2))
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert os.path.exists(snapshot)
    assert not os.path.exists(os.path.join(out, 'model_final.npz')), (
        'the run ended before it could be killed')
    latest = snapshots.find_latest_snapshot(out)
    assert snapshots.check_snapshot(snapshot)['iteration'] == 4

    result = _run(_command(data_dir, out, 2, '--loaderjob', '0',
                           '--resume'))
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'resuming at iteration {}'.format(
        snapshots.snapshot_iteration(latest)) in result.stdout
    # The same run as the uninterrupted one (which had a loader process).
    _assert_bit_identical(os.path.join(finished[0], 'model_final.npz'),
                          os.path.join(out, 'model_final.npz'))
    _assert_bit_identical(os.path.join(finished[0], 'model_best.npz'),
                          os.path.join(out, 'model_best.npz'))
    assert not [n for n in os.listdir(out) if n.startswith('.')]
    resumed, uninterrupted = _log(out), _log(finished[0])
    assert [e['iteration'] for e in resumed] == [
        e['iteration'] for e in uninterrupted] == list(range(1, N_ITER + 1))
    np.testing.assert_allclose([e['lr'] for e in resumed],
                               [e['lr'] for e in uninterrupted], rtol=1e-12)
    with open(os.path.join(finished[0], 'config.json')) as f:
        other_run = json.load(f)['run_id']
    info = snapshots.check_snapshot(os.path.join(out, 'snapshot_iter_8.npz'))
    assert info['iteration'] == N_ITER and info['n_processes'] == 2
    assert info['run_id'] not in (None, other_run)
    with open(os.path.join(out, 'replica_check.json')) as f:
        assert json.load(f)['params_identical']
    with open(os.path.join(out, 'config.json')) as f:
        config = json.load(f)
    assert [r['iteration'] for r in config['resumed']] == [
        snapshots.snapshot_iteration(latest)]
    assert config['run_id'] == info['run_id']

    # Other settings or another process count cannot continue this run,
    # and a refused resume changes nothing.
    before = _state(out)
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
    # Nor can another run's snapshot.
    result = _run(_command(data_dir, out, 2, '--resume', os.path.join(
        finished[0], 'snapshot_iter_4.npz')))
    assert result.returncode == 2
    assert 'belongs to another run' in _error_lines(result)
    assert _state(out) == before


def test_resume_without_snapshot_is_one_error_line(data_dir, tmp_path):
    result = _run(_command(data_dir, str(tmp_path), 2, '--resume'))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ['error: no snapshot_iter_*.npz in {} to resume from; '
                     'start without --resume, or pass --resume PATH to a '
                     'snapshot'.format(tmp_path)]


def test_refused_runs_change_nothing(finished, data_dir, tmp_path):
    done = finished[0]
    before = _state(done)
    # A fresh run into a folder that holds another run.
    result = _run(_command(data_dir, done, 2))
    assert result.returncode == 2
    assert _error_lines(result) == (
        'error: --out {} holds another training run (config.json, '
        'model_final.npz, snapshot_iter_4.npz, ...); continue it with '
        '--resume, or start this run with another --out'.format(done))
    # Weights are no snapshot.
    weights = os.path.join(done, 'model_final.npz')
    result = _run(_command(data_dir, done, 2, '--resume', weights))
    assert result.returncode == 2
    assert _error_lines(result) == (
        'error: {0} holds model weights, not a training snapshot; to '
        'fine-tune from them start a new run with --pretrained-model {0}'
        .format(weights))
    assert _state(done) == before

    # A snapshot damaged in its middle is found before anything changes.
    damaged = str(tmp_path / 'damaged')
    os.makedirs(damaged)
    for name in ('config.json', 'snapshot_iter_4.npz'):
        shutil.copy(os.path.join(done, name), damaged)
    path = os.path.join(damaged, 'snapshot_iter_4.npz')
    with open(path, 'r+b') as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(b'\xff' * 16)
    before = _state(damaged)
    result = _run(_command(data_dir, damaged, 2, '--resume'))
    assert result.returncode == 2
    line = _error_lines(result)
    assert line.startswith('error: {} is truncated or corrupt ('.format(path))
    assert 'CRC' in line
    assert _state(damaged) == before

    # A folder another job is using.
    fd = os.open(os.path.join(damaged, '.lock'), os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        result = _run(_command(data_dir, damaged, 2, '--resume'))
    finally:
        os.close(fd)
    assert result.returncode == 2
    assert 'another training run is using --out' in _error_lines(result)

    # --out a file; a failed fresh run leaves no folder.
    a_file = str(tmp_path / 'a_file')
    open(a_file, 'w').close()
    result = _run(_command(data_dir, a_file, 2))
    assert result.returncode == 2
    assert 'is a file, not a folder' in _error_lines(result)
    new = str(tmp_path / 'new' / 'out')
    result = _run(_command(str(tmp_path / 'no_data'), new, 2))
    assert result.returncode == 2
    _error_lines(result)
    assert not os.path.exists(str(tmp_path / 'new'))


def _limit_file_size():
    # Snapshots of this run are about 400 MB; everything else is smaller.
    limit = 300 * 2 ** 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_full_disk_while_writing_a_snapshot(data_dir, tmp_path):
    out = str(tmp_path / 'out')
    command = _command(data_dir, out, 2, '--loaderjob', '0')
    command[command.index('--snapshot-interval') + 1] = '2'
    result = _run(command, preexec_fn=_limit_file_size)
    assert result.returncode == 2
    assert _error_lines(result) == (
        'error: could not write {} (File too large); nothing was written; '
        'free some space on its disk'.format(
            os.path.join(out, 'snapshot_iter_2.npz')))
    # Nothing to resume from, so nothing stays.
    assert not os.path.exists(out)


def _broken_copy(data_dir, tmp_path, change, split='train'):
    import cv2
    copy = str(tmp_path / 'data')
    shutil.copytree(data_dir, copy)
    path = sorted(
        os.path.join(dirpath, name)
        for dirpath, _, names in os.walk(os.path.join(copy, 'gtFine',
                                                      split))
        for name in names if name.endswith('_labelIds.png'))[-1]
    label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    cv2.imwrite(path, change(label))
    return copy, path


@pytest.mark.parametrize('split', ['train', 'val'])
def test_a_bad_label_on_one_process_stops_all_with_one_line(
        data_dir, tmp_path, split):
    # A training label read by a loader process, or a validation label
    # (read at the end) that only one process reads.
    def poke(label):
        label[:3, :3] = 200
        return label
    copy, path = _broken_copy(data_dir, tmp_path, poke, split)
    out = str(tmp_path / 'out')
    command = _command(copy, out, 2, '--loaderjob', '1')
    command[command.index('--iteration') + 1] = '2'
    result = _run(command, timeout=300)
    assert result.returncode == 2
    line = _error_lines(result)
    assert line.startswith('error: ') and 'holds the value 200' in line
    assert path in line
    assert not os.path.exists(out)


def test_label_sizes_are_checked_before_training(data_dir, tmp_path):
    copy, path = _broken_copy(data_dir, tmp_path, lambda label: label[:-2])
    result = _run(_command(copy, str(tmp_path / 'out'), 2))
    assert result.returncode == 2
    line = _error_lines(result)
    assert 'label image {} is'.format(path) in line
    assert 'checked before training' in line
    assert 'epoch' not in result.stdout


@pytest.mark.parametrize('error,line,code', [
    ('UserError("bad label")', 'error: process 1: bad label', 2),
    ('OSError(28, "No space left on device", "/out/log")',
     'error: process 1: No space left on device (/out/log); free some space '
     'on its disk', 2),
])
def test_an_error_on_one_process_stops_all_with_one_line(error, line, code):
    script = (
        'import time\n'
        'from pspnet import mpi\n'
        'from pspnet.errors import UserError\n'
        'comm = mpi.create_communicator("naive")\n'
        'def work():\n'
        '    if comm.rank == 1:\n'
        '        raise {}\n'
        '    comm.mpi_comm.barrier()\n'
        '    time.sleep(60)\n'
        'mpi.run_collectively(comm, work)\n'.format(error))
    start = time.time()
    result = _run([MPIEXEC, '-n', '2', sys.executable, '-c', script],
                  timeout=120)
    assert time.time() - start < 50, 'rank 0 was left waiting'
    assert result.returncode == code
    assert result.stderr.strip().splitlines() == [line]


# A process that fails prints its line and aborts the job. MPICH's launcher
# proxy forwards the line and the abort to mpiexec, which exits as soon as
# it reads the abort; a proxy slow to run (all cores busy) could forward the
# abort first and lose the line. Here the proxy is slowed on purpose: each
# of its writes is delayed by strace (where strace can trace it), and the
# failing process prints a log line just before it fails, which keeps the
# proxy busy when the error comes.
_LOOPED_CASE = '''
import os
import subprocess
import sys
import time

from pspnet import mpi
from pspnet.errors import UserError

failing, error, strace = sys.argv[1:4]
comm = mpi.create_communicator("naive")


def traced(pid):
    with open("/proc/{}/status".format(pid)) as f:
        return any(line.split()[1:2] not in ([], ["0"])
                   for line in f if line.startswith("TracerPid:"))


if comm.rank == 0 and strace:
    proxy = os.getppid()
    tracer = subprocess.Popen(
        [strace, "-qq", "-o", os.devnull, "-e", "trace=write",
         "-e", "inject=write:delay_exit=2000", "-p", str(proxy)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while (not traced(proxy) and tracer.poll() is None
           and time.time() < deadline):
        time.sleep(0.01)
comm.mpi_comm.barrier()


def work():
    if str(comm.rank) in failing.split(","):
        print("iteration 5: a log line just before the failure", flush=True)
        raise eval(error)
    comm.mpi_comm.barrier()
    time.sleep(60)


mpi.run_collectively(comm, work)
'''

_LOOPED_ERRORS = [
    # (processes, failing ranks, error, status, the lines one of which
    # stderr must hold)
    (2, '1', 'UserError("bad label")', 2, ['error: process 1: bad label']),
    (2, '0', 'UserError("bad label")', 2, ['error: process 0: bad label']),
    (2, '0,1', 'UserError("bad label")', 2,
     ['error: process 0: bad label', 'error: process 1: bad label']),
    (2, '1', 'KeyboardInterrupt()', 130, ['process 1: interrupted']),
    (2, '0,1', 'KeyboardInterrupt()', 130,
     ['process 0: interrupted', 'process 1: interrupted']),
]


def test_the_error_line_is_never_lost_under_load():
    strace = shutil.which('strace') or ''
    # Busy processes on every core, as a loaded machine has.
    load = [subprocess.Popen([sys.executable, '-c', 'while True: pass'])
            for _ in range(os.cpu_count() or 2)]
    failures = []
    try:
        for i in range(20):
            n, failing, error, code, lines = _LOOPED_ERRORS[
                i % len(_LOOPED_ERRORS)]
            start = time.time()
            result = _run([MPIEXEC, '-n', str(n), sys.executable, '-c',
                           _LOOPED_CASE, failing, error, strace], timeout=120)
            elapsed = time.time() - start
            err = result.stderr.strip().splitlines()
            if (result.returncode != code or len(err) != 1
                    or err[0] not in lines or elapsed > 50):
                failures.append((failing, error, result.returncode,
                                 result.stderr[-300:], round(elapsed, 1)))
    finally:
        for process in load:
            process.kill()
            process.wait()
    assert failures == [], '{} of 20 runs failed: {}'.format(
        len(failures), failures)


# Resuming with other options: those that decide what is trained are the
# run's identity (refused, naming the run's value, nothing changes); the
# others are recorded in config.json from the resumed iteration on.
@pytest.mark.parametrize('change,used', [
    (['--dataset', 'ade20k'], '--dataset cityscapes'),
    (['--model', 'pspnet_resnet101'], '--model pspnet_resnet50'),
    (['--crop-size', '72'], '--crop-size 64'),
    (['--iteration', '12'], '--iteration 8'),
    (['--seed', '3'], '--seed 0'),
    (['--dtype', 'mixed16'], '--dtype float32'),
    (['--class-weight', 'WEIGHTS'],
     'no --class-weight, not --class-weight FILE (0.5, 1, 1.5, 2, 2.5, 3, '
     '3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7, 7.5, 8, 8.5, 9, 9.5)'),
], ids=lambda value: value[0] if isinstance(value, list) else '')
def test_a_resume_with_another_identity_option_is_refused(
        finished, data_dir, tmp_path, change, used):
    done = finished[0]
    weights = str(tmp_path / 'weights.txt')
    with open(weights, 'w') as f:
        f.write(''.join('{}\n'.format(0.5 * (i + 1)) for i in range(19)))
    change = [weights if c == 'WEIGHTS' else c for c in change]
    before = _state(done)
    result = _run(_command(data_dir, done, 2, '--resume', *change))
    assert result.returncode == 2
    assert _error_lines(result) == (
        'error: the run in {} used {}; resume with the same options, or '
        'start a new run with another --out'.format(done, used))
    assert _state(done) == before


# option: (flags of the resumed run, value before, value after)
_RECORDED_CHANGES = {
    'lr': (['--lr', '0.001'], LR, 0.001),
    'data_dir': ([], 'DATA', 'LINK'),
    'snapshot_interval': (['--snapshot-interval', '3'], 4, 3),
    'keep_snapshots': (['--keep-snapshots', '2'], 3, 2),
    'val_interval': (['--val-interval', '4'], 0, 4),
    'log_interval': (['--log-interval', '2'], 1, 2),
    'loaderjob': (['--loaderjob', '0'], 1, 0),
    'tf32': (['--tf32'], False, True),
    'progress': ([], False, True),
}


@pytest.fixture(scope='module')
def resumed_with_changes(finished, data_dir, tmp_path_factory):
    """The uninterrupted run continued from its snapshot of iteration 4
    into another --out, with every option that may change changed."""
    folder = tmp_path_factory.mktemp('changed')
    link = str(folder / 'data_link')
    os.symlink(data_dir, link)
    out = str(folder / 'out')
    command = _command(link, out, 2, '--resume',
                       os.path.join(finished[0], 'snapshot_iter_4.npz'))
    command.remove('--no-progress')
    for flags, _, _ in _RECORDED_CHANGES.values():
        command += flags
    result = _run(command)
    assert result.returncode == 0, result.stdout + result.stderr
    with open(os.path.join(out, 'config.json')) as f:
        config = json.load(f)
    return out, link, result, config


@pytest.mark.parametrize('key', sorted(_RECORDED_CHANGES))
def test_an_option_changed_on_resume_is_recorded(resumed_with_changes,
                                                 data_dir, key):
    _, link, result, config = resumed_with_changes
    _, before, after = _RECORDED_CHANGES[key]
    before, after = ({'DATA': data_dir, 'LINK': link}.get(v, v)
                     for v in (before, after))
    record = config['resumed'][-1]
    assert record['iteration'] == 4
    assert record['changed'][key] == {'before': before, 'after': after}
    assert '; {} {} -> {}'.format(key, before, after) in result.stdout


def test_a_resume_records_what_changed_and_nothing_else(
        resumed_with_changes, finished):
    out, _, _, config = resumed_with_changes
    # The device and the communicator stayed.
    assert sorted(config['resumed'][-1]['changed']) == sorted(
        _RECORDED_CHANGES)
    with open(os.path.join(finished[0], 'config.json')) as f:
        original = json.load(f)
    assert {k: v for k, v in config.items() if k not in ('out', 'resumed')} \
        == {k: v for k, v in original.items() if k != 'out'}
    # The new learning rate rules from the resumed iteration on.
    lrs = {e['iteration']: e['lr'] for e in _log(out)}
    for iteration in (6, 8):
        assert lrs[iteration] == pytest.approx(
            0.001 * (1 - (iteration - 1) / N_ITER) ** 0.9, rel=1e-12)


# The best model -------------------------------------------------------------

def _model_arrays_of_snapshot(path):
    prefix = 'updater/model:main/model/'
    with np.load(path) as f:
        return {key[len(prefix):]: f[key] for key in f.files
                if key.startswith(prefix)}


@pytest.fixture(scope='module')
def validated(data_dir, tmp_path_factory):
    """A run validated and snapshotted every 2 iterations."""
    out = str(tmp_path_factory.mktemp('validated'))
    command = _command(data_dir, out, 2, '--loaderjob', '0',
                       '--keep-snapshots', '4')
    for flag in ('--val-interval', '--snapshot-interval'):
        command[command.index(flag) + 1] = '2'
    result = _run(command)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, command


def test_the_best_model_is_the_best_validation_so_far(validated):
    out, _ = validated
    log = {e['iteration']: e for e in _log(out)}
    best, seen = None, []
    for iteration in (2, 4, 6, 8):
        entry = log[iteration]
        seen.append(entry['validation/main/miou'])
        best = int(np.argmax(seen)) * 2 + 2  # the first of equal ones
        assert entry['validation/main/best_iteration'] == best
        assert entry['validation/main/best_miou'] == max(seen)
    assert not any('validation/main/best_miou' in log[i]
                   for i in (1, 3, 5, 7))
    with open(os.path.join(out, 'model_best.json')) as f:
        assert json.load(f) == {'iteration': best, 'miou': max(seen)}
    # The weights of that iteration, bit for bit, as its snapshot has them.
    best_arrays = _arrays(os.path.join(out, 'model_best.npz'))
    snapshot = _model_arrays_of_snapshot(
        os.path.join(out, 'snapshot_iter_{}.npz'.format(best)))
    assert sorted(best_arrays) == sorted(snapshot)
    assert all(best_arrays[k].tobytes() == snapshot[k].tobytes()
               for k in snapshot)
    # It loads strictly, as model_final.npz does.
    model = PSPNetResNet50(n_class=19, input_size=64)
    pretrained.load_npz(model, os.path.join(out, 'model_best.npz'))


@pytest.mark.parametrize('iteration', [4, 8])
def test_a_run_continued_elsewhere_keeps_its_best_model(
        validated, tmp_path, iteration):
    """From the middle (the best so far may be overtaken later) and from
    the end (the remembered best is the run's: its file is copied)."""
    out, command = validated
    new_out = str(tmp_path / 'continued')
    command = list(command)
    command[command.index('--out') + 1] = new_out
    command += ['--resume', os.path.join(
        out, 'snapshot_iter_{}.npz'.format(iteration))]
    result = _run(command)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ('model_best.npz', 'model_best.json'):
        with open(os.path.join(out, name), 'rb') as a, open(
                os.path.join(new_out, name), 'rb') as b:
            assert a.read() == b.read(), name
    with open(os.path.join(out, 'model_best.json')) as f:
        best = json.load(f)['iteration']
    if iteration >= best:
        assert 'copied from {}'.format(out) in result.stdout
    # A best model file of another iteration than the snapshot remembers is
    # not taken for it: the best starts again at the next validation.
    if iteration == 4:
        with open(os.path.join(new_out, 'model_best.json'), 'w') as f:
            json.dump({'iteration': 2, 'miou': -1.0}, f)
        command[-1] = os.path.join(new_out, 'snapshot_iter_6.npz')
        command[command.index('--out') + 1] = new_out
        result = _run(command)
        assert result.returncode == 0, result.stdout + result.stderr
        assert 'kept again from the next validation' in result.stdout
        with open(os.path.join(new_out, 'model_best.json')) as f:
            assert json.load(f)['iteration'] == 8
        best_arrays = _arrays(os.path.join(new_out, 'model_best.npz'))
        snapshot = _model_arrays_of_snapshot(
            os.path.join(new_out, 'snapshot_iter_8.npz'))
        assert all(best_arrays[k].tobytes() == snapshot[k].tobytes()
                   for k in snapshot)
