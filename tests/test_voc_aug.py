"""VOC 2012's train_aug set (SBD's labels with VOC's): the items on
generated VOC+SBD trees, the errors, and train_multi.py on it under
mpiexec -n 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pspnet import flags
from pspnet.datasets import VOCAugSemanticSegmentationDataset
from pspnet.datasets import registry
from pspnet.datasets import sbd as sbd_module
from pspnet.datasets.base import read_label_image
from pspnet.errors import UserError
from tests.helpers import dataset_factory

pytest.importorskip('scipy', reason='SBD labels need SciPy: pip install -r '
                    'requirements.txt')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), 'mpiexec')


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    return dataset_factory.make_voc_sbd(
        str(tmp_path_factory.mktemp('voc_sbd')), size=(40, 56))


def _expected_label(raw):
    return np.where(raw == 255, -1, raw).astype(np.int32)


@pytest.mark.parametrize('seed', range(4))
def test_items_are_the_union_minus_val_with_the_written_labels(
        tmp_path, seed):
    rng = np.random.RandomState(seed)
    n_voc = int(rng.randint(2, 5))
    n_sbd = tuple(int(n) for n in rng.randint(0, 5, size=2))
    size = tuple(int(s) for s in rng.randint(9, 50, size=2))
    tree = dataset_factory.make_voc_sbd(
        str(tmp_path), n_voc=n_voc, n_sbd=n_sbd, size=size,
        borders=bool(seed % 2), seed=seed)
    dataset = VOCAugSemanticSegmentationDataset(str(tmp_path))
    voc_train, voc_val = set(tree['voc']['train']), set(tree['voc']['val'])
    sbd_ids = set(tree['sbd']['train']) | set(tree['sbd']['val'])
    assert dataset.ids == sorted((sbd_ids | voc_train) - voc_val)
    assert dataset.ids == tree['train_aug']
    assert len(set(dataset.ids)) == len(dataset.ids) == len(dataset)
    assert not voc_val & set(dataset.ids)
    assert len(dataset) == n_voc + sum(n_sbd)
    for i, id_ in enumerate(dataset.ids):
        img, label = dataset[i]
        assert img.shape == (3,) + size and img.dtype == np.float32
        assert label.shape == size and label.dtype == np.int32
        if id_ in voc_train:
            # VOC annotates it: VOC's label (with its borders).
            assert dataset.label_paths[i].endswith(
                os.path.join('SegmentationClass', id_ + '.png'))
            expected = _expected_label(read_label_image(
                dataset.label_paths[i]))
        else:
            assert dataset.label_paths[i] == os.path.join(
                tree['sbd_dir'], 'dataset', 'cls', id_ + '.mat')
            expected = _expected_label(tree['sbd_labels'][id_])
        np.testing.assert_array_equal(label, expected)
        assert (label == -1).any() == (id_ in voc_train or seed % 2 == 1)
        # VOC's JPEGImages first, SBD's img for the others.
        folder = 'JPEGImages' if id_ in voc_train else os.path.join(
            'dataset', 'img')
        assert dataset.img_paths[i].endswith(os.path.join(folder,
                                                          id_ + '.jpg'))


def test_sbd_labels_read_back_as_written(tree):
    for id_, raw in tree['sbd_labels'].items():
        path = os.path.join(tree['sbd_dir'], 'dataset', 'cls', id_ + '.mat')
        stored = sbd_module.read_sbd_label(path)
        assert stored.dtype == np.int32
        np.testing.assert_array_equal(stored, raw)


def test_data_dir_forms_and_registry(tree):
    root = os.path.dirname(os.path.dirname(tree['voc_dir']))
    by_root = registry.get_dataset('voc', 'train_aug', root)
    by_voc = registry.get_dataset('voc', 'train_aug', tree['voc_dir'])
    assert by_root.ids == by_voc.ids == tree['train_aug']
    explicit = VOCAugSemanticSegmentationDataset(
        tree['voc_dir'], sbd_dir=tree['sbd_dir'])
    assert explicit.ids == tree['train_aug']
    spec = registry.lookup('voc')
    assert spec.train_split == 'train_aug'
    assert (spec.iterations, spec.input_size) == (30000, 473)
    assert registry.lookup('cityscapes').train_split == 'train'
    assert flags.training_dataset('voc') == 'voc'
    val = registry.get_dataset('voc', 'val', root)
    assert val.ids == tree['voc']['val']


def test_missing_sbd_names_where_and_what_to_download(tmp_path):
    voc_dir = dataset_factory.make_voc(str(tmp_path), n_images=2,
                                       size=(8, 8))
    with pytest.raises(UserError) as error:
        VOCAugSemanticSegmentationDataset(voc_dir)
    message = str(error.value)
    assert '\n' not in message
    assert os.path.join(str(tmp_path), 'benchmark_RELEASE') in message
    assert sbd_module.URL in message


def test_missing_sbd_with_auto_is_found_before_any_download(
        tmp_path, monkeypatch):
    import chainer
    previous = chainer.dataset.get_dataset_root()
    chainer.dataset.set_dataset_root(str(tmp_path))
    try:
        monkeypatch.setattr('pspnet.datasets.voc.fetch_dataset',
                            lambda *args: pytest.fail('downloaded VOC'))
        with pytest.raises(UserError, match='no SBD at .*{}'.format(
                os.path.join('voc', 'benchmark_RELEASE'))):
            VOCAugSemanticSegmentationDataset('auto')
    finally:
        chainer.dataset.set_dataset_root(previous)


def _copy_tree(tree, tmp_path):
    import shutil
    root = os.path.dirname(os.path.dirname(tree['voc_dir']))
    copy = str(tmp_path / 'copy')
    shutil.copytree(root, copy)
    return copy, os.path.join(copy, 'benchmark_RELEASE', 'dataset')


def test_damaged_sbd_files_are_one_line(tree, tmp_path):
    import scipy.io
    copy, sbd = _copy_tree(tree, tmp_path)
    own = tree['sbd']['val'][0]
    dataset = VOCAugSemanticSegmentationDataset(copy)
    index = dataset.ids.index(own)
    path = os.path.join(sbd, 'cls', own + '.mat')

    def error():
        with pytest.raises(UserError) as caught:
            dataset[index]
        assert '\n' not in str(caught.value)
        assert path in str(caught.value)
        return str(caught.value)

    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    assert 'truncated or corrupt' in error()
    scipy.io.savemat(path, {'other': np.zeros((2, 2))})
    assert 'holds no GTcls.Segmentation' in error()
    scipy.io.savemat(path, {'GTcls': {'Segmentation': np.zeros(
        (2, 2, 3), np.uint8)}})
    assert 'not an integer label map' in error()
    scipy.io.savemat(path, {'GTcls': {'Segmentation': np.full(
        tree['sbd_labels'][own].shape, 0.5)}})
    assert 'not an integer label map' in error()
    # MATLAB's doubles are taken when they are whole numbers.
    scipy.io.savemat(path, {'GTcls': {'Segmentation': tree['sbd_labels'][
        own].astype(np.float64)}})
    np.testing.assert_array_equal(dataset[index][1], _expected_label(
        tree['sbd_labels'][own]))
    raw = tree['sbd_labels'][own].copy()
    raw[0, 0] = 21
    dataset_factory.write_sbd_label(path, raw)
    assert 'holds the value 21 (1 pixels)' in error()
    raw[0, 0] = 0
    dataset_factory.write_sbd_label(path, raw[:-1])
    assert 'label image {} is'.format(path) in error()
    os.remove(path)
    with pytest.raises(UserError, match='has no label file .*{}'.format(
            own)):
        VOCAugSemanticSegmentationDataset(copy)


def test_missing_lists_and_images_are_one_line(tree, tmp_path):
    copy, sbd = _copy_tree(tree, tmp_path)
    own = tree['sbd']['train'][0]
    os.remove(os.path.join(sbd, 'img', own + '.jpg'))
    with pytest.raises(UserError, match='image {}.jpg is in neither'.format(
            own)):
        VOCAugSemanticSegmentationDataset(copy)
    os.remove(os.path.join(sbd, 'val.txt'))
    with pytest.raises(UserError, match='SBD list .*val.txt does not exist'):
        VOCAugSemanticSegmentationDataset(copy)


@pytest.mark.skipif(not os.path.isfile(MPIEXEC), reason='no mpiexec next to '
                    '{} (pip install mpich)'.format(sys.executable))
def test_train_multi_on_voc_train_aug_under_two_processes(tmp_path):
    tree = dataset_factory.make_voc_sbd(
        str(tmp_path / 'data'), n_voc=2, n_sbd=(3, 1), size=(48, 64),
        learnable=True, class_ids=(0, 3, 8, 15))
    out = str(tmp_path / 'out')
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')
    result = subprocess.run(
        [MPIEXEC, '-n', '2', sys.executable,
         os.path.join(ROOT, 'train_multi.py'), '--dataset', 'voc',
         '--model', 'pspnet_resnet50', '--data-dir', str(tmp_path / 'data'),
         '--out', out, '--crop-size', '48', '--batchsize', '1',
         '--iteration', '3', '--lr', '0.002', '--pretrained-model', 'none',
         '--log-interval', '1', '--val-interval', '0', '--loaderjob', '0',
         '--no-progress'], cwd=ROOT, env=env, timeout=600,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'training pspnet_resnet50 on voc' in result.stdout
    with open(os.path.join(out, 'log')) as f:
        log = json.load(f)
    assert [entry['iteration'] for entry in log] == [1, 2, 3]
    assert np.all(np.isfinite([entry['main/loss'] for entry in log]))
    with open(os.path.join(out, 'validation.json')) as f:
        figures = json.load(f)
    # Validated on VOC val, named by VOC's classes.
    assert figures['n_images'] == len(tree['voc']['val'])
    assert figures['label_names'][15] == 'person'
    assert os.path.isfile(os.path.join(out, 'model_final.npz'))
