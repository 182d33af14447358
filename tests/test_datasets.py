import os
import shutil
import subprocess
import sys

import chainer
import cv2
import numpy as np
import pytest
from PIL import Image

from pspnet import datasets
from pspnet.datasets import ade20k as ade20k_module
from pspnet.datasets import ADE20KSemanticSegmentationDataset
from pspnet.datasets import CityscapesSemanticSegmentationDataset
from pspnet.datasets import voc as voc_module
from pspnet.datasets import VOCSemanticSegmentationDataset
from pspnet.errors import UserError
from tests.helpers import dataset_factory

CITIES = ('zurich', 'aachen', 'bochum')


@pytest.fixture(scope='module')
def cityscapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cityscapes'))
    return dataset_factory.make_cityscapes(
        root, splits=('train', 'val', 'test'), cities=CITIES, n_per_city=2,
        size=(16, 24))


@pytest.fixture(scope='module')
def ade20k(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ade20k'))
    return dataset_factory.make_ade20k(root, n_images=3, size=(16, 24))


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('voc'))
    return dataset_factory.make_voc(root, n_images=3, size=(16, 24))


def _check_item(img, label, shape):
    assert img.shape == (3,) + shape and img.dtype == np.float32
    assert label.shape == shape and label.dtype == np.int32
    assert 0 <= img.min() and img.max() <= 255


def _raw(path):
    return cv2.imread(path, cv2.IMREAD_UNCHANGED).astype(np.int32)


def test_label_tables():
    for name, n_class in (('cityscapes', 19), ('ade20k', 150), ('voc', 21)):
        names = getattr(datasets,
                        name + '_semantic_segmentation_label_names')
        colors = getattr(datasets,
                         name + '_semantic_segmentation_label_colors')
        assert isinstance(names, tuple) and len(names) == n_class
        assert len(set(names)) == n_class
        assert all(isinstance(n, str) and n == n.strip() for n in names)
        assert isinstance(colors, tuple) and len(colors) == n_class
        assert all(isinstance(c, tuple) and len(c) == 3 and
                   all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                   for c in colors)
        assert datasets.get_label_names(name) is names
        assert datasets.get_label_colors(name) is colors
    assert datasets.cityscapes_semantic_segmentation_label_names[:3] == (
        'road', 'sidewalk', 'building')
    assert datasets.cityscapes_semantic_segmentation_label_colors[0] == (
        128, 64, 128)
    assert datasets.cityscapes_id_to_train_id[7] == 0
    assert datasets.cityscapes_id_to_train_id[33] == 18
    assert sorted(datasets.cityscapes_id_to_train_id.values()) == list(
        range(19))
    assert datasets.ade20k_semantic_segmentation_label_names[:3] == (
        'wall', 'building', 'sky')
    assert datasets.ade20k_semantic_segmentation_label_colors[-1] == (
        92, 0, 255)
    assert datasets.voc_semantic_segmentation_label_names[0] == 'background'
    assert datasets.voc_semantic_segmentation_label_colors[15] == (
        192, 128, 128)
    assert datasets.voc_semantic_segmentation_ignore_label_color == (
        224, 224, 192)


def test_import_is_light(tmp_path):
    # Importing must not scan or create dataset folders.
    env = dict(os.environ, CHAINER_DATASET_ROOT=str(tmp_path / 'root'))
    subprocess.check_call([sys.executable, '-c', 'import pspnet.datasets'],
                          env=env, cwd=os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__))))
    assert not (tmp_path / 'root').exists()


@pytest.mark.parametrize('split', ['train', 'val', 'test'])
def test_cityscapes_items_and_order(cityscapes, split):
    dataset = CityscapesSemanticSegmentationDataset(
        cityscapes, label_resolution='fine', split=split)
    assert len(dataset) == 6
    cities = [os.path.basename(os.path.dirname(p))
              for p in dataset.img_paths]
    assert cities == ['aachen'] * 2 + ['bochum'] * 2 + ['zurich'] * 2
    assert dataset.img_paths == sorted(dataset.img_paths)
    # The test labels of the archives are placeholders: read as ChainerCV
    # reads them, but no labels for evaluation.
    assert dataset.has_labels == (split != 'test')
    for i in range(len(dataset)):
        img, label = dataset[i]
        _check_item(img, label, (16, 24))
        raw = _raw(dataset.label_paths[i])
        expected = np.full_like(raw, -1)
        for id_, train_id in datasets.cityscapes_id_to_train_id.items():
            expected[raw == id_] = train_id
        np.testing.assert_array_equal(label, expected)
        assert (label == -1).any() and label.max() <= 18
        bgr = cv2.imread(dataset.img_paths[i])
        np.testing.assert_array_equal(img, bgr[:, :, ::-1].transpose(2, 0, 1))


def test_cityscapes_raw_ids_and_defaults(cityscapes):
    dataset = CityscapesSemanticSegmentationDataset(
        cityscapes, split='val', ignore_labels=False)
    _, label = dataset[0]
    np.testing.assert_array_equal(label, _raw(dataset.label_paths[0]))
    assert label.min() >= 0
    assert dataset.label_paths[0].endswith('_gtFine_labelIds.png')


def test_cityscapes_coarse(tmp_path):
    root = dataset_factory.make_cityscapes(
        str(tmp_path), splits=('train_extra',), cities=('erlangen',),
        n_per_city=2, size=(8, 8), label_resolution='coarse')
    dataset = CityscapesSemanticSegmentationDataset(
        root, label_resolution='coarse', split='train_extra')
    assert len(dataset) == 2
    assert dataset.label_paths[1].endswith('_gtCoarse_labelIds.png')
    _check_item(*dataset[1], shape=(8, 8))
    with pytest.raises(UserError, match='gtFine'):
        CityscapesSemanticSegmentationDataset(root, 'fine', 'train')


def test_ade20k_items_and_order(ade20k):
    for split, prefix in (('train', 'ADE_train_'), ('val', 'ADE_val_')):
        dataset = ADE20KSemanticSegmentationDataset(ade20k, split=split)
        assert len(dataset) == 3
        names = [os.path.basename(p) for p in dataset.img_paths]
        assert names == ['{}{:08d}.jpg'.format(prefix, k) for k in (1, 2, 3)]
        for i in range(3):
            img, label = dataset[i]
            _check_item(img, label, (16, 24))
            np.testing.assert_array_equal(
                label, _raw(dataset.label_paths[i]) - 1)
            assert label.min() == -1 and label.max() <= 149
    # The ADEChallengeData2016 folder itself is accepted too.
    inner = ADE20KSemanticSegmentationDataset(
        os.path.join(ade20k, 'ADEChallengeData2016'), split='val')
    assert inner.img_paths == dataset.img_paths


def test_voc_items_order_and_palette(voc):
    train = VOCSemanticSegmentationDataset(voc, split='train')
    val = VOCSemanticSegmentationDataset(voc, split='val')
    trainval = VOCSemanticSegmentationDataset(voc, split='trainval')
    assert (len(train), len(val), len(trainval)) == (3, 3, 6)
    assert trainval.ids == sorted(train.ids + val.ids)
    for i in range(3):
        img, label = val[i]
        _check_item(img, label, (16, 24))
        with Image.open(val.label_paths[i]) as f:
            assert f.mode == 'P'
            indices = np.asarray(f).astype(np.int32)
        indices[indices == 255] = -1
        np.testing.assert_array_equal(label, indices)
        assert label.min() == -1 and label.max() <= 20
    # The folder holding VOCdevkit is accepted too.
    outer = os.path.dirname(os.path.dirname(voc))
    assert VOCSemanticSegmentationDataset(outer, 'val').ids == val.ids


def test_voc_label_values_not_colours(tmp_path):
    voc = dataset_factory.make_voc(str(tmp_path), splits=('val',),
                                   n_images=1, size=(2, 3))
    values = np.array([[0, 15, 255], [20, 1, 0]], dtype=np.uint8)
    img = Image.frombytes('P', (3, 2), values.tobytes())
    img.putpalette([c for color in datasets.voc_palette for c in color])
    dataset = VOCSemanticSegmentationDataset(voc, 'val')
    img.save(dataset.label_paths[0])
    np.testing.assert_array_equal(
        dataset[0][1], [[0, 15, -1], [20, 1, 0]])


def test_generic_access(voc):
    dataset = VOCSemanticSegmentationDataset(voc, 'val')
    pairs = dataset[0:2]
    assert len(pairs) == 2 and len(pairs[0]) == 2
    assert isinstance(dataset, chainer.dataset.DatasetMixin)
    via_registry = datasets.get_dataset('voc', 'val', voc)
    assert via_registry.img_paths == dataset.img_paths


def test_learnable_labels_follow_colours(tmp_path):
    root = dataset_factory.make_cityscapes(
        str(tmp_path), splits=('val',), cities=('aachen',), n_per_city=1,
        size=(16, 16), learnable=True, train_ids=(0, 10))
    img, label = CityscapesSemanticSegmentationDataset(root, split='val')[0]
    colors = datasets.cityscapes_semantic_segmentation_label_colors
    for train_id in (0, 10):
        mean = img[:, label == train_id].mean(axis=1)
        np.testing.assert_allclose(mean, colors[train_id], atol=4)


# Bad layouts and missing files.

def _copy(src, tmp_path):
    dst = str(tmp_path / 'copy')
    shutil.copytree(src, dst)
    return dst


def test_missing_folders(tmp_path):
    with pytest.raises(UserError, match='leftImg8bit.*cityscapes-dataset'):
        CityscapesSemanticSegmentationDataset(str(tmp_path), split='val')
    with pytest.raises(UserError, match='ADEChallengeData2016.zip'):
        ADE20KSemanticSegmentationDataset(str(tmp_path), split='val')
    with pytest.raises(UserError, match='val.txt does not exist'):
        VOCSemanticSegmentationDataset(str(tmp_path), split='val')


def test_empty_folders(tmp_path):
    for folder in ('leftImg8bit/val/aachen', 'gtFine/val/aachen',
                   'ADEChallengeData2016/images/validation',
                   'ADEChallengeData2016/annotations/validation'):
        os.makedirs(str(tmp_path / folder))
    with pytest.raises(UserError, match='no .*leftImg8bit.png files'):
        CityscapesSemanticSegmentationDataset(str(tmp_path), split='val')
    with pytest.raises(UserError, match=r'no \*.jpg files'):
        ADE20KSemanticSegmentationDataset(str(tmp_path), split='val')
    (tmp_path / 'ImageSets' / 'Segmentation').mkdir(parents=True)
    (tmp_path / 'ImageSets' / 'Segmentation' / 'val.txt').write_text('\n')
    with pytest.raises(UserError, match='lists no images'):
        VOCSemanticSegmentationDataset(str(tmp_path), split='val')


def test_image_without_label(cityscapes, ade20k, voc, tmp_path):
    cs = _copy(cityscapes, tmp_path / 'cs')
    os.remove(CityscapesSemanticSegmentationDataset(
        cs, split='val').label_paths[3])
    with pytest.raises(UserError, match='has no label file'):
        CityscapesSemanticSegmentationDataset(cs, split='val')
    ade = _copy(ade20k, tmp_path / 'ade')
    os.remove(ADE20KSemanticSegmentationDataset(ade, 'train').label_paths[1])
    with pytest.raises(UserError, match='has no label file'):
        ADE20KSemanticSegmentationDataset(ade, 'train')
    v = _copy(os.path.dirname(os.path.dirname(voc)), tmp_path / 'voc')
    dataset = VOCSemanticSegmentationDataset(v, 'train')
    os.remove(dataset.img_paths[2])
    with pytest.raises(UserError, match='listed in .* does not exist'):
        VOCSemanticSegmentationDataset(v, 'train')


def test_corrupt_files(voc, tmp_path):
    v = _copy(os.path.dirname(os.path.dirname(voc)), tmp_path)
    dataset = VOCSemanticSegmentationDataset(v, 'val')
    with open(dataset.img_paths[0], 'wb') as f:
        f.write(b'not a jpeg')
    with pytest.raises(UserError, match='cannot read image'):
        dataset[0]
    with open(dataset.label_paths[1], 'wb') as f:
        f.write(b'\x89PNG broken')
    with pytest.raises(UserError, match='cannot read label image'):
        dataset.get_label(1)
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    cv2.imwrite(dataset.label_paths[2], rgb)
    with pytest.raises(UserError, match='is a RGB image'):
        dataset.get_label(2)


@pytest.mark.parametrize('make, message', [
    (lambda d: CityscapesSemanticSegmentationDataset(d, 'medium', 'val'),
     'fine.*coarse'),
    (lambda d: CityscapesSemanticSegmentationDataset(d, 'fine', 'extra'),
     'no .extra. split'),
    (lambda d: ADE20KSemanticSegmentationDataset(d, 'test'),
     "'train', 'val' or 'release_test'"),
    (lambda d: VOCSemanticSegmentationDataset(d, 'testing'), 'trainval'),
    (lambda d: VOCSemanticSegmentationDataset(d, 'test'), 'VOC2012test.tar'),
    (lambda d: ADE20KSemanticSegmentationDataset(d, 'release_test'),
     'release_test.zip'),
    (lambda d: datasets.get_dataset('camvid', 'val', d), 'choose one'),
])
def test_bad_arguments(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        make(str(tmp_path))


# data_dir='auto': Chainer's dataset root, downloads.

@pytest.fixture
def dataset_root(tmp_path):
    previous = chainer.dataset.get_dataset_root()
    root = str(tmp_path / 'chainer_root')
    chainer.dataset.set_dataset_root(root)
    yield root
    chainer.dataset.set_dataset_root(previous)


def test_cityscapes_auto_tells_where_to_put_it(dataset_root):
    expected = os.path.join(dataset_root, 'pfnet', 'chainercv', 'cityscapes')
    with pytest.raises(UserError) as error:
        CityscapesSemanticSegmentationDataset(split='val')
    message = str(error.value)
    assert os.path.join(expected, 'leftImg8bit') in message
    assert os.path.join(expected, 'gtFine') in message
    assert '\n' not in message
    dataset_factory.make_cityscapes(expected, splits=('val',),
                                    cities=('aachen',), n_per_city=1,
                                    size=(8, 8))
    assert len(CityscapesSemanticSegmentationDataset(split='val')) == 1


def test_auto_offline_error(dataset_root, monkeypatch, tmp_path):
    missing = (tmp_path / 'nowhere.zip').as_uri()
    monkeypatch.setattr(ade20k_module, 'URL', missing)
    monkeypatch.setattr(voc_module, 'URL', missing.replace('.zip', '.tar'))
    with pytest.raises(UserError, match='could not download .*nowhere.zip'):
        ADE20KSemanticSegmentationDataset(split='val')
    with pytest.raises(UserError, match='could not download .*nowhere.tar'):
        VOCSemanticSegmentationDataset(split='val')


def test_auto_downloads_and_extracts(dataset_root, monkeypatch, tmp_path):
    source = tmp_path / 'source'
    dataset_factory.make_ade20k(str(source / 'ade'), splits=('val',),
                                n_images=2, size=(8, 8))
    ade_zip = shutil.make_archive(str(tmp_path / 'ADEChallengeData2016'),
                                  'zip', str(source / 'ade'))
    dataset_factory.make_voc(str(source / 'voc'), splits=('val',),
                             n_images=2, size=(8, 8))
    voc_tar = shutil.make_archive(str(tmp_path / 'VOCtrainval'), 'tar',
                                  str(source / 'voc'))
    monkeypatch.setattr(ade20k_module, 'URL', 'file://' + ade_zip)
    monkeypatch.setattr(voc_module, 'URL', 'file://' + voc_tar)
    ade = ADE20KSemanticSegmentationDataset(split='val')
    voc = VOCSemanticSegmentationDataset(split='val')
    base = os.path.join(dataset_root, 'pfnet', 'chainercv')
    assert ade.img_paths[0].startswith(os.path.join(base, 'ade20k'))
    assert voc.img_paths[0].startswith(os.path.join(
        base, 'voc', 'VOCdevkit', 'VOC2012'))
    assert len(ade) == len(voc) == 2
    # Already extracted: no second download.
    monkeypatch.setattr(ade20k_module, 'URL', 'file:///nonexistent.zip')
    assert len(ADE20KSemanticSegmentationDataset(split='val')) == 2


# Label files that do not fit: another size, values that are no class.

_ALLOWED_RAW = {
    # dataset: (class, raw values allowed, raw values refused)
    'cityscapes': (CityscapesSemanticSegmentationDataset,
                   set(range(34)), set(range(34, 256))),
    'ade20k': (ADE20KSemanticSegmentationDataset,
               set(range(151)), set(range(151, 256))),
    'voc': (VOCSemanticSegmentationDataset,
            set(range(21)) | {255}, set(range(21, 255))),
}


def _dataset(name, root):
    cls = _ALLOWED_RAW[name][0]
    if name == 'cityscapes':
        return cls(root, split='val')
    return cls(root, 'val')


def _rewrite_label(dataset, i, values):
    """Write raw ``values`` into label file ``i`` in its own format."""
    path = dataset.label_paths[i]
    with Image.open(path) as f:
        mode, palette = f.mode, f.getpalette()
    out = Image.fromarray(values.astype(np.uint8), mode='L')
    if mode == 'P':
        out = out.convert('P')
        out.putpalette(palette)
    out.save(path)


@pytest.mark.parametrize('name', sorted(_ALLOWED_RAW))
def test_label_values_that_are_no_class_are_refused(
        name, cityscapes, ade20k, voc, tmp_path):
    source = {'cityscapes': cityscapes, 'ade20k': ade20k, 'voc': voc}[name]
    root = _copy(source if name != 'voc'
                 else os.path.dirname(os.path.dirname(source)), tmp_path)
    dataset = _dataset(name, root)
    _, allowed, refused = _ALLOWED_RAW[name]
    rng = np.random.RandomState(len(name))
    shape = dataset.get_label(0).shape
    # Every allowed value reads; each refused one, planted among allowed
    # ones, is named with its file.
    values = rng.choice(sorted(allowed), size=shape)
    _rewrite_label(dataset, 0, values)
    label = dataset.get_label(0)
    assert label.min() >= -1 and label.max() < dataset.n_class
    for bad in rng.choice(sorted(refused), size=8, replace=False):
        planted = values.copy()
        planted.flat[rng.randint(planted.size)] = bad
        _rewrite_label(dataset, 0, planted)
        with pytest.raises(UserError) as info:
            dataset[0]
        message = str(info.value)
        assert dataset.label_paths[0] in message
        assert 'holds the value {} (1 pixels)'.format(bad) in message


@pytest.mark.parametrize('name', sorted(_ALLOWED_RAW))
def test_label_of_another_size_is_refused(name, cityscapes, ade20k, voc,
                                          tmp_path):
    source = {'cityscapes': cityscapes, 'ade20k': ade20k, 'voc': voc}[name]
    root = _copy(source if name != 'voc'
                 else os.path.dirname(os.path.dirname(source)), tmp_path)
    dataset = _dataset(name, root)
    H, W = dataset.get_label(1).shape
    for shape in ((H, W + 1), (H - 1, W), (W, H)):
        _rewrite_label(dataset, 1, np.zeros(shape, np.uint8))
        with pytest.raises(UserError, match='is {}x{} but its image .* is '
                           '{}x{}'.format(shape[1], shape[0], W, H)):
            dataset[1]
