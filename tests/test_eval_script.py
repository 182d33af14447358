"""eval_semantic_segmentation.py end to end, on tiny generated datasets with
random-weight npz files (ResNet50, input size 64)."""

import json
import os
import subprocess
import sys

import chainer
import numpy as np
import pytest

import dataset_factory
import eval_semantic_segmentation as script
from pspnet import PSPNetResNet50
from pspnet.datasets import CityscapesSemanticSegmentationDataset
from pspnet.evaluations import calc_semantic_segmentation_confusion

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
# One BLAS thread in every process, so that one process and two compute
# with the same arithmetic.
ENV = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1')


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


def _run(argv, mpi=0, timeout=300):
    command = [sys.executable, os.path.join(REPO,
                                            'eval_semantic_segmentation.py')]
    if mpi:
        command = [MPIEXEC, '-n', str(mpi)] + command
    return subprocess.run(command + argv, cwd=REPO, env=ENV, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


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
    one = _run(_args(data, '--json', one_json))
    assert one.returncode == 0, one.stderr
    two = _run(_args(data, '--json', two_json), mpi=2)
    assert two.returncode == 0, two.stderr
    assert one.stdout == two.stdout
    with open(one_json) as f:
        one_record = json.load(f)
    with open(two_json) as f:
        assert json.load(f) == one_record

    lines = one.stdout.splitlines()
    assert len(lines) == 19 + 4
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
                       'of --json')
    voc = dataset_factory.make_voc(str(tmp_path / 'voc'), splits=('val',),
                                   n_images=1, size=(8, 8))
    _expect_user_error(capsys, ['--dataset', 'voc'] + _args(data)[2:-1]
                       + [voc], 'have 19 classes but voc has 21')
    with pytest.raises(SystemExit) as exit_info:
        script.main(_args(data, '--scales', '0.5,x'))
    assert exit_info.value.code == 2
    assert 'positive numbers' in capsys.readouterr().err


def test_missing_dataset_has_no_traceback(tmp_path):
    result = _run(['--dataset', 'ade20k', '--model', 'pspnet_resnet50',
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
    result = _run(_args(data)[:-1] + [str(tmp_path)], mpi=2, timeout=120)
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
    result = _run(_args(data)[:-1] + [bad], mpi=2, timeout=120)
    assert result.returncode != 0
    assert 'error: process 1: cannot read image' in result.stderr
    assert 'Traceback' not in result.stderr
