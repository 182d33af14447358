"""eval_semantic_segmentation.py end to end, on tiny generated datasets with
random-weight npz files (ResNet50, input size 64)."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import chainer
import numpy as np
import pytest

import eval_semantic_segmentation as script
from pspnet import device
from pspnet import PSPNetResNet50
from pspnet.evaluations import checkpoints
from pspnet.evaluations import prediction_files
from pspnet.datasets import CityscapesSemanticSegmentationDataset
from pspnet.evaluations import calc_semantic_segmentation_confusion
from tests.helpers import dataset_factory
from tests.helpers import random_weights
from tests.helpers.files import read_bytes
from tests.helpers.eval_runs import ENV
from tests.helpers.eval_runs import MPIEXEC
from tests.helpers.eval_runs import REPO
from tests.helpers.eval_runs import run_eval
from tests.helpers.files import folder_tree



@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('eval')
    cityscapes = dataset_factory.make_cityscapes(
        str(root / 'cityscapes'), splits=('val',),
        cities=('aachen', 'bochum'), n_per_city=2, size=(64, 96))
    weights = str(root / 'cityscapes.npz')
    chainer.serializers.save_npz(weights,
                                 PSPNetResNet50(19, input_size=64))
    return {'root': root, 'cityscapes': cityscapes, 'weights': weights}


def _args(data, *extra):
    return ['--dataset', 'cityscapes', '--model', 'pspnet_resnet50',
            '--pretrained-model', data['weights'], '--input-size', '64',
            '--data-dir', data['cityscapes']] + list(extra)


def _expect_user_error(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        script.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith('error: ') and message in err, err


def test_one_process_and_mpiexec_agree(data):
    if not os.path.exists(MPIEXEC):
        pytest.skip('mpiexec of the mpich wheel not installed')
    one_json = str(data['root'] / 'one.json')
    two_json = str(data['root'] / 'two.json')
    one = run_eval(_args(data, '--json', one_json))
    assert one.returncode == 0, one.stderr
    two = run_eval(_args(data, '--json', two_json), mpi=2)
    assert two.returncode == 0, two.stderr
    assert one.stdout == two.stdout
    with open(one_json) as f:
        one_record = json.load(f)
    with open(two_json) as f:
        assert json.load(f) == one_record

    lines = one.stdout.splitlines()
    # ChainerCV's table, then Cityscapes' category scores (no instance
    # files in this tree: no iIoU, said in one line)
    assert len(lines) == 19 + 4 + 2 + 8 + 1
    assert lines[23] == '=' * 34 + ' Cityscapes'
    assert lines[24] == '-' * 34 + ' categories'
    assert lines[25].startswith('               IoU flat : ')
    assert lines[32].startswith('      category mean IoU : ')
    assert 'no iIoU' in lines[33]
    assert one_record['category_miou'] is not None
    assert 'iiou' not in one_record
    assert lines[0].startswith(' ' * 19 + 'road : ')
    assert lines[19] == '=' * 34
    assert lines[20].startswith('               mean IoU : ')
    assert lines[21].startswith(' Class average accuracy : ')
    assert lines[22].startswith('Global average accuracy : ')
    assert one_record['n_images'] == 4
    assert lines[20] == '               mean IoU : {:.4f}'.format(
        one_record['miou'])
    confusion = np.array(one_record['confusion'])
    assert confusion.shape == (19, 19)
    dataset = CityscapesSemanticSegmentationDataset(data['cityscapes'],
                                                    split='val')
    assert confusion.sum() == sum(int((dataset[i][1] >= 0).sum())
                                  for i in range(4))
    assert 'img/s' in one.stderr  # the progress bar


def test_result_equals_direct_evaluation(data, capsys):
    """--limit, --batchsize, --scales and --no-flip reach the model and the
    figures are those of the model's own predictions."""
    out = str(data['root'] / 'direct.json')
    script.main(_args(data, '--limit', '3', '--batchsize', '2',
                      '--scales', '0.75,1.0', '--no-flip', '--json', out))
    table = capsys.readouterr().out
    with open(out) as f:
        record = json.load(f)
    assert record['n_images'] == 3

    model = PSPNetResNet50(pretrained_model=data['weights'], input_size=64)
    model.scales, model.flip = (0.75, 1.0), False
    dataset = CityscapesSemanticSegmentationDataset(data['cityscapes'],
                                                    split='val')
    items = [dataset[i] for i in range(3)]
    preds = model.predict([img for img, _ in items])
    expected = calc_semantic_segmentation_confusion(
        preds, [label for _, label in items], n_class=19)
    np.testing.assert_array_equal(record['confusion'], expected)
    iou = np.array([np.nan if v is None else v for v in record['iou']])
    assert np.isnan(iou).sum() == sum(
        1 for c in range(19)
        if expected[c].sum() == 0 and expected[:, c].sum() == 0)
    assert '{:.4f}'.format(record['pixel_accuracy']) in table
    assert set(record) >= {'miou', 'iou', 'mean_class_accuracy',
                           'class_accuracy', 'pixel_accuracy', 'n_images'}


def test_voc_end_to_end(tmp_path, capsys):
    voc = dataset_factory.make_voc(str(tmp_path), splits=('val',),
                                   n_images=2, size=(48, 56))
    weights = str(tmp_path / 'voc.npz')
    chainer.serializers.save_npz(weights, PSPNetResNet50(21, input_size=64))
    script.main(['--dataset', 'voc', '--model', 'pspnet_resnet50',
                 '--pretrained-model', weights, '--input-size', '64',
                 '--data-dir', voc, '--limit', '1'])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 21 + 4
    assert lines[0].strip().startswith('background : ')


def test_user_errors(data, tmp_path, capsys):
    _expect_user_error(capsys, _args(data)[:-1] + [str(tmp_path)],
                       'Cityscapes image folder')
    _expect_user_error(capsys, _args(data, '--json',
                                     str(tmp_path / 'no' / 'x.json')),
                       '--json: the folder of')
    voc = dataset_factory.make_voc(str(tmp_path / 'voc'), splits=('val',),
                                   n_images=1, size=(8, 8))
    _expect_user_error(capsys, ['--dataset', 'voc'] + _args(data)[2:-1]
                       + [voc], 'have 19 classes but voc has 21')
    with pytest.raises(SystemExit) as exit_info:
        script.main(_args(data, '--scales', '0.5,x'))
    assert exit_info.value.code == 2
    assert 'positive numbers' in capsys.readouterr().err


def test_missing_dataset_has_no_traceback(tmp_path):
    result = run_eval(['--dataset', 'ade20k', '--model', 'pspnet_resnet50',
                   '--data-dir', str(tmp_path), '--pretrained-model',
                   str(tmp_path / 'none.npz')])
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    assert result.stderr.startswith('error: ')
    assert len(result.stderr.strip().splitlines()) == 1


def test_mpiexec_errors_end_every_process(data, tmp_path):
    if not os.path.exists(MPIEXEC):
        pytest.skip('mpiexec of the mpich wheel not installed')
    # The same error in every process: one message, clean exit.
    result = run_eval(_args(data)[:-1] + [str(tmp_path)], mpi=2, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines()
              if line.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in result.stderr
    # A corrupt image in the second process's share only: the first
    # process must not wait forever.
    bad = dataset_factory.make_cityscapes(
        str(tmp_path / 'bad'), splits=('val',), cities=('aachen', 'bochum'),
        n_per_city=1, size=(64, 64))
    dataset = CityscapesSemanticSegmentationDataset(bad, split='val')
    with open(dataset.img_paths[1], 'wb') as f:
        f.write(b'broken')
    result = run_eval(_args(data)[:-1] + [bad], mpi=2, timeout=120)
    assert result.returncode != 0
    assert 'error: process 1: cannot read image' in result.stderr
    assert 'Traceback' not in result.stderr


# Resumable evaluation ------------------------------------------------------

def _progress_done(path):
    try:
        with np.load(path) as archive:
            return int(archive['n_done'])
    except Exception:  # not there yet, or being replaced
        return -1


def _start(argv, mpi=0):
    command = [sys.executable, os.path.join(REPO,
                                            'eval_semantic_segmentation.py')]
    if mpi:
        command = [MPIEXEC, '-n', str(mpi)] + command
    return subprocess.Popen(command + argv, cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _kill_when(process, path, n_done, timeout=240):
    """kill -9 the whole job once the checkpoint ``path`` counts at least
    ``n_done`` images; False when the job ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            return False
        if _progress_done(path) >= n_done:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    raise AssertionError('no checkpoint {} within {} s'.format(path,
                                                                timeout))


@pytest.fixture(scope='module')
def resumable(tmp_path_factory):
    root = tmp_path_factory.mktemp('resume')
    data = dataset_factory.make_cityscapes(
        str(root / 'cityscapes'), splits=('val',),
        cities=('aachen', 'bochum', 'jena', 'ulm'), n_per_city=2,
        size=(48, 64), instances=True, seed=5)
    model = random_weights.sensitive_model(PSPNetResNet50, 19, 64,
                                           np.random.RandomState(4))
    model.head_conv2.b.array[11:] += 8000
    weights = str(root / 'sensitive.npz')
    chainer.serializers.save_npz(weights, model)
    return {'root': root, 'data': data, 'weights': weights}


def _resume_args(fixture, out, pred, *extra):
    return ['--dataset', 'cityscapes', '--model', 'pspnet_resnet50',
            '--pretrained-model', fixture['weights'], '--input-size', '64',
            '--no-flip', '--data-dir', fixture['data'], '--json', out,
            '--save-predictions', pred, '--checkpoint-interval', '0'
            ] + list(extra)



def _files(folder):
    return {os.path.relpath(p, folder): read_bytes(p)
            for p in glob.glob(os.path.join(folder, '*', '*.png'))}


@pytest.mark.parametrize('processes', [1, 2])
def test_killed_evaluation_continues_bit_for_bit(resumable, processes):
    """kill -9 of the job after a checkpoint, then the same command: the
    JSON (every figure and the confusion matrix) and the prediction files
    equal those of an uninterrupted run, byte for byte."""
    if processes > 1 and not os.path.exists(MPIEXEC):
        pytest.skip('mpiexec of the mpich wheel not installed')
    root = resumable['root']
    tag = 'n{}'.format(processes)
    whole_json, whole_pred = (str(root / (tag + '-whole.json')),
                              str(root / (tag + '-whole')))
    result = run_eval(_resume_args(resumable, whole_json, whole_pred),
                  mpi=processes if processes > 1 else 0)
    assert result.returncode == 0, result.stderr

    out, pred = str(root / (tag + '.json')), str(root / tag)
    argv = _resume_args(resumable, out, pred)
    checkpoint = checkpoints.checkpoint_path(out, 0, processes)
    killed = _kill_when(_start(argv, mpi=processes if processes > 1 else 0),
                        checkpoint, 2)
    assert killed, 'the evaluation ended before it could be killed'
    assert not os.path.exists(out)
    assert 2 <= _progress_done(checkpoint) < 8 // processes

    # Options that change the result are refused, naming them; nothing
    # is changed on disk.
    before = read_bytes(checkpoint)
    refused = run_eval(argv + ['--scales', '0.75'],
                   mpi=processes if processes > 1 else 0)
    assert refused.returncode == 2
    errors = [line for line in refused.stderr.splitlines()
              if line.startswith('error: ')]
    assert len(errors) == 1 and 'scales' in errors[0], refused.stderr
    assert 'Traceback' not in refused.stderr
    assert read_bytes(checkpoint) == before
    if processes > 1:
        other = run_eval(argv)  # one process, checkpoints of two
        assert other.returncode == 2
        assert 'another process count' in other.stderr

    resumed = run_eval(argv, mpi=processes if processes > 1 else 0)
    assert resumed.returncode == 0, resumed.stderr
    assert 'continuing from' in resumed.stderr
    assert read_bytes(out) == read_bytes(whole_json)
    assert _files(pred) == _files(whole_pred) and len(_files(pred)) == 8
    assert not glob.glob(out + '.progress*')
    assert not glob.glob(pred + '.progress*')


def test_checkpoint_of_other_weights_is_refused(resumable, tmp_path):
    out, pred = str(tmp_path / 'w.json'), str(tmp_path / 'w')
    argv = _resume_args(resumable, out, pred)
    assert _kill_when(_start(argv), checkpoints.checkpoint_path(out), 1)
    weights = str(tmp_path / 'other.npz')
    shutil.copy(resumable['weights'], weights)
    refused = run_eval(argv + ['--pretrained-model', weights])
    assert refused.returncode == 2
    assert 'weights' in refused.stderr and 'delete' in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


# Processes that disagree, GPUs that are missing ----------------------------

def test_mpiexec_processes_must_see_the_same_dataset(data, tmp_path):
    if not os.path.exists(MPIEXEC):
        pytest.skip('mpiexec of the mpich wheel not installed')
    fewer = dataset_factory.make_cityscapes(
        str(tmp_path / 'fewer'), splits=('val',), cities=('aachen',),
        n_per_city=2, size=(64, 96))
    script_path = os.path.join(REPO, 'eval_semantic_segmentation.py')
    for other in (fewer, None):
        if other is None:  # same count, other file names
            other = dataset_factory.make_cityscapes(
                str(tmp_path / 'renamed'), splits=('val',),
                cities=('aachen', 'erfurt'), n_per_city=2, size=(64, 96))
        for first, second in ((data['cityscapes'], other),
                              (other, data['cityscapes'])):
            command = [MPIEXEC, '-n', '1', sys.executable, script_path
                       ] + _args(data)[:-1] + [first] + [
                ':', '-n', '1', sys.executable, script_path
            ] + _args(data)[:-1] + [second]
            result = subprocess.run(command, cwd=REPO, env=ENV, timeout=300,
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE,
                                    universal_newlines=True)
            assert result.returncode == 2, result.stderr
            errors = [line for line in result.stderr.splitlines()
                      if line.startswith('error: ')]
            assert len(errors) == 1, result.stderr
            assert 'do not see the same dataset' in errors[0]
            assert 'Traceback' not in result.stderr
            assert 'mean IoU' not in result.stdout


def test_mpiexec_gpu_without_gpus_says_so(data):
    if not os.path.exists(MPIEXEC):
        pytest.skip('mpiexec of the mpich wheel not installed')
    if device.gpu_count() > 0:
        pytest.skip('this machine has a GPU')
    result = run_eval(_args(data, '--gpu', '0'), mpi=2, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines()
              if line.startswith('error: ')]
    assert len(errors) == 1, result.stderr
    assert 'requirements-gpu.txt' in errors[0] and 'drop --gpu' in errors[0]
    assert 'mpi4py' not in result.stderr
    assert '--communicator' not in result.stderr


# Outputs: made only after every check, removed when a run fails ------------


def _output_args(root, nested):
    pred = os.path.join(root, 'new', 'pred') if nested else os.path.join(
        root, 'pred')
    color = os.path.join(pred, 'color') if nested else os.path.join(
        root, 'color')
    if nested:
        os.makedirs(os.path.dirname(pred), exist_ok=True)
    return ['--save-predictions', pred, '--save-color', color,
            '--json', os.path.join(root, 'out.json')]


@pytest.mark.parametrize('nested', [False, True])
def test_a_refused_evaluation_leaves_nothing(data, tmp_path, capsys, nested):
    """Whatever check fails (dataset, weights, class count, checkpoint),
    the output folders, created only after every check, do not exist."""
    root = str(tmp_path / 'outs')
    os.makedirs(root)
    outputs = _output_args(root, nested)
    voc = dataset_factory.make_voc(str(tmp_path / 'voc'), splits=('val',),
                                   n_images=1, size=(8, 8))
    stale = checkpoints.checkpoint_path(os.path.join(root, 'out.json'))
    cases = [
        (_args(data)[:-1] + [str(tmp_path / 'none')], 'Cityscapes image'),
        (['--dataset', 'voc'] + _args(data)[2:-1] + [voc],
         'have 19 classes but voc has 21'),
        (_args(data)[:5] + [str(tmp_path / 'no.npz')] + _args(data)[6:],
         'no.npz'),
        (_args(data, '--scales', '0.5'), 'evaluation checkpoint'),
    ]
    for argv, message in cases:
        if message == 'evaluation checkpoint':  # of other options
            checkpoints.save_checkpoint(
                stale, checkpoints.EvaluationState(19), 'other')
        before = folder_tree(root)
        _expect_user_error(capsys, argv + outputs, message)
        assert folder_tree(root) == before, message


def test_a_bad_label_of_process_1_leaves_no_outputs(tmp_path):
    """mpiexec -n 2: the label check of a described dataset fails on
    process 1 only; no process creates an output."""
    if not os.path.exists(MPIEXEC):
        pytest.skip('mpiexec of the mpich wheel not installed')
    from PIL import Image
    path = dataset_factory.make_own_dataset(
        str(tmp_path / 'data'), n_images=4, palette=False, size=(48, 40))
    label_path = str(tmp_path / 'data' / 'labels' / 'val' /
                     'val_003_mask.png')  # process 1's half
    raw = np.asarray(Image.open(label_path)).copy()
    raw[2, 2] = 9
    Image.fromarray(raw).save(label_path)
    weights = str(tmp_path / 'w.npz')
    chainer.serializers.save_npz(weights, PSPNetResNet50(3, input_size=64))
    root = str(tmp_path / 'outs')
    os.makedirs(root)
    for nested in (False, True):
        result = run_eval(['--dataset', path, '--model', 'pspnet_resnet50',
                       '--pretrained-model', weights, '--input-size', '64'
                       ] + _output_args(root, nested), mpi=2, timeout=300)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines()
                  if line.startswith('error: ')]
        assert len(errors) == 1, result.stderr
        assert errors[0].startswith('error: process 1: ')
        assert label_path in errors[0] and 'the value 9 ' in errors[0]
        assert folder_tree(root) == ({'new': None} if nested else {})


def _broken_copy(data, tmp_path, index):
    """A copy of the Cityscapes tree whose ``index``-th image is corrupt,
    and a function that restores it."""
    copy = str(tmp_path / 'cityscapes')
    shutil.copytree(data['cityscapes'], copy)
    image = CityscapesSemanticSegmentationDataset(
        copy, split='val').img_paths[index]
    content = read_bytes(image)
    with open(image, 'wb') as f:
        f.write(b'broken')

    def restore():
        with open(image, 'wb') as f:
            f.write(content)
    return copy, restore


def test_a_run_failing_midway_without_checkpoint_removes_its_files(
        data, tmp_path, capsys):
    """The third image is corrupt: the predictions of the first two and
    the folders are removed when no checkpoint was written (files that
    were there before stay, folders too)."""
    copy, _ = _broken_copy(data, tmp_path, 2)
    argv = _args(data)[:-1] + [copy, '--checkpoint-interval', '100000']
    for nested in (False, True):
        root = str(tmp_path / 'outs{}'.format(int(nested)))
        os.makedirs(root)
        _expect_user_error(capsys, argv + _output_args(root, nested),
                           'cannot read image')
        assert folder_tree(root) == ({'new': None} if nested else {})
    # A prediction folder of an earlier run: its files stay, new ones go.
    root = str(tmp_path / 'earlier')
    os.makedirs(os.path.join(root, 'pred', 'aachen'))
    names = prediction_files.relative_names(
        CityscapesSemanticSegmentationDataset(copy, split='val').img_paths,
        'cityscapes')
    old = os.path.join(root, 'pred', names[0])
    with open(old, 'wb') as f:
        f.write(b'an earlier prediction')
    _expect_user_error(capsys, argv + _output_args(root, False),
                       'cannot read image')
    tree = folder_tree(root)
    assert set(tree) == {'pred', 'pred/aachen', 'pred/' + names[0]}
    assert tree['pred/' + names[0]] != b'an earlier prediction'  # replaced


def test_a_run_failing_midway_keeps_its_checkpoint(data, tmp_path, capsys):
    """With a checkpoint, a failed run keeps it and the predictions before
    it: the same command continues once the image is repaired, and gives
    what an uninterrupted run gives."""
    copy, restore = _broken_copy(data, tmp_path, 2)
    argv = _args(data)[:-1] + [copy, '--checkpoint-interval', '0']
    root = str(tmp_path / 'outs')
    os.makedirs(root)
    outputs = _output_args(root, True)
    _expect_user_error(capsys, argv + outputs, 'cannot read image')
    pred = outputs[1]
    checkpoint = checkpoints.checkpoint_path(os.path.join(root, 'out.json'))
    assert _progress_done(checkpoint) == 2
    assert len(glob.glob(os.path.join(pred, '*', '*.png'))) == 2
    assert len(glob.glob(os.path.join(pred, 'color', '*', '*.png'))) == 2
    restore()
    script.main(argv + outputs)
    assert 'continuing from' in capsys.readouterr().err
    assert not os.path.exists(checkpoint)
    whole = str(tmp_path / 'whole')
    os.makedirs(whole)
    script.main(argv + _output_args(whole, True))
    capsys.readouterr()
    assert folder_tree(root) == folder_tree(whole)


def test_colour_folder_options(data, tmp_path, capsys):
    pred = str(tmp_path / 'pred')
    _expect_user_error(capsys, _args(data, '--save-predictions', pred,
                                     '--save-color', pred + '/'),
                       'is the --save-predictions folder')
    _expect_user_error(capsys, _args(data, '--save-predictions', pred,
                                     '--save-color',
                                     str(tmp_path / 'a' / 'b')),
                       'does not exist')
    assert not os.listdir(str(tmp_path))
    script.main(_args(data, '--limit', '1', '--save-predictions', pred,
                      '--save-color', os.path.join(pred, 'color')))
    # The count of this run's predictions (--limit), not the dataset's.
    assert 'predictions of 1 images in ' in capsys.readouterr().out
    assert len(glob.glob(os.path.join(pred, '*', '*.png'))) == 1
    assert len(glob.glob(os.path.join(pred, 'color', '*', '*.png'))) == 1


def test_mpiexec_failing_midway_stops_together_and_cleans_up(data, tmp_path):
    """A corrupt first image of process 1's share: process 0 stops after
    its first batch, with one line; without checkpoints every prediction
    and folder goes, with them (interval 0) process 0 keeps its first
    prediction and its checkpoint, and the same command continues to the
    result of an uninterrupted run."""
    if not os.path.exists(MPIEXEC):
        pytest.skip('mpiexec of the mpich wheel not installed')
    copy, restore = _broken_copy(data, tmp_path, 2)  # process 1: 2 and 3
    for interval in ('100000', '0'):
        root = str(tmp_path / ('outs' + interval))
        os.makedirs(root)
        argv = _args(data)[:-1] + [copy, '--checkpoint-interval', interval
                                   ] + _output_args(root, True)
        result = run_eval(argv, mpi=2, timeout=300)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines()
                  if line.startswith('error: ')]
        assert len(errors) == 1, result.stderr
        assert errors[0].startswith('error: process 1: cannot read image')
        assert 'Traceback' not in result.stderr
        tree = folder_tree(root)
        if interval != '0':
            assert tree == {'new': None}
            continue
        names = set(tree)
        assert 'out.json.progress-0of2.npz' in names
        assert 'out.json.progress-1of2.npz' not in names
        predictions = [n for n in names if n.endswith('.png')
                       and '/color/' not in n]
        assert predictions == ['new/pred/aachen/aachen_000000_000019_'
                               'pred_labelIds.png']
    restore()
    result = run_eval(argv, mpi=2, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'continuing from' in result.stderr
    whole = str(tmp_path / 'whole')
    os.makedirs(whole)
    result = run_eval(_args(data)[:-1] + [copy] + _output_args(whole, True),
                  mpi=2, timeout=300)
    assert result.returncode == 0, result.stderr
    assert folder_tree(root) == folder_tree(whole)
