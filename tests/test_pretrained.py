"""Weight resolution: one function decides what the link, the scripts and
training build and load, for every kind of ``pretrained_model``."""

import itertools

import chainer
import numpy as np
import pytest

from pspnet import models
from pspnet import pretrained
from pspnet import PSPNetResNet50
from pspnet.datasets import registry
from pspnet.datasets.spec import DEFAULT_INPUT_SIZE
from pspnet.errors import UserError

SIZE = 64


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """npz files of PSPNetResNet50 with the class counts of the three
    datasets and one no dataset has, plus an extractor file."""
    folder = tmp_path_factory.mktemp('resolve')
    paths = {}
    for n_class in (7, 19, 21, 150):
        model = PSPNetResNet50(n_class, input_size=SIZE)
        paths[n_class] = str(folder / 'pspnet_{}.npz'.format(n_class))
        chainer.serializers.save_npz(paths[n_class], model,
                                     compression=False)
    paths['extractor'] = str(folder / 'extractor.npz')
    chainer.serializers.save_npz(paths['extractor'], model.extractor,
                                 compression=False)
    return paths


@pytest.fixture
def offline_presets(monkeypatch, files):
    """Published files stand for themselves: the 19-class file for
    cityscapes, the 150-class one for ade20k, the extractor for imagenet."""
    by_url = {registry.DATASETS['cityscapes'].weights[50]: files[19],
              registry.DATASETS['ade20k'].weights[50]: files[150],
              registry.EXTRACTOR_WEIGHTS[50]: files['extractor']}
    monkeypatch.setattr(pretrained, 'download_model', by_url.__getitem__)


@pytest.fixture
def header_reads(monkeypatch):
    """Counts the reads of each file's npz header."""
    counts = {}
    read = pretrained.read_npz_shapes

    def counting(path):
        counts[path] = counts.get(path, 0) + 1
        return read(path)

    monkeypatch.setattr(pretrained, 'read_npz_shapes', counting)
    return counts


@pytest.mark.parametrize('n_class', [7, 19, 21, 150])
def test_file_fixes_class_count_dataset_and_input_size(files, n_class):
    plan = pretrained.resolve_weights(50, files[n_class])
    spec = registry.dataset_of_n_class(n_class)
    assert plan.n_class == n_class
    assert plan.dataset is spec
    assert plan.input_size == (spec.input_size if spec
                               else DEFAULT_INPUT_SIZE)
    assert plan.path == files[n_class] and plan.loads_every_array


def test_presets_take_the_dataset_facts(offline_presets, files):
    for name in ('cityscapes', 'ade20k'):
        spec = registry.DATASETS[name]
        plan = pretrained.resolve_weights(50, name)
        assert (plan.n_class, plan.input_size, plan.dataset) == (
            spec.n_class, spec.input_size, spec)
    plan = pretrained.resolve_weights(50, 'imagenet', n_class=5)
    assert plan.extractor_path == files['extractor'] and plan.path is None
    with pytest.raises(UserError, match='n_class must be given'):
        pretrained.resolve_weights(50, 'imagenet')
    with pytest.raises(UserError, match='no published voc weights'):
        pretrained.resolve_weights(50, 'voc')


def test_every_combination_reads_each_header_once(files, header_reads):
    datasets = [None] + list(registry.DATASETS.values())
    for n_class, dataset, training in itertools.product(
            (7, 19, 21, 150), datasets, (False, True)):
        header_reads.clear()
        try:
            plan = pretrained.resolve_weights(50, files[n_class],
                                              dataset=dataset,
                                              training=training)
        except UserError as e:
            # Only a class count the dataset does not have is refused,
            # and only outside training.
            assert not training and dataset.n_class != n_class
            assert 'have {} classes but {} has'.format(
                n_class, dataset.name) in str(e)
            continue
        model = PSPNetResNet50(pretrained_model=plan)
        assert header_reads == {files[n_class]: 1}
        expected = dataset.n_class if dataset else n_class
        assert model.n_class == plan.n_class == expected
        # Fine-tuning to another class count leaves the classifier out.
        assert (plan.except_prefix is not None) == (expected != n_class)


def test_training_takes_extractors_and_none(files):
    plan = pretrained.resolve_weights(50, files['extractor'], n_class=4,
                                      training=True)
    assert plan.extractor_path == files['extractor'] and plan.path is None
    model = PSPNetResNet50(pretrained_model=plan)
    assert model.n_class == 4
    with pytest.raises(UserError, match='only a ResNet extractor'):
        pretrained.resolve_weights(50, files['extractor'], n_class=4)
    plan = pretrained.resolve_weights(50, 'none', n_class=4, training=True)
    assert plan.path is None and plan.extractor_path is None
    with pytest.raises(UserError, match='does not exist'):
        pretrained.resolve_weights(50, 'none', n_class=4)


def test_unusable_files(tmp_path):
    foreign = str(tmp_path / 'foreign.npz')
    np.savez(foreign, a=np.zeros(2))
    with pytest.raises(UserError, match='neither a ResNet extractor'):
        pretrained.resolve_weights(50, foreign, n_class=3)
    with pytest.raises(UserError, match='does not exist; pass an existing'):
        pretrained.resolve_weights(50, str(tmp_path / 'missing.npz'))


def test_build_model_uses_the_dataset_of_the_weights(files):
    model = models.build_model('pspnet_resnet50', None, files[150])
    assert model.dataset is registry.DATASETS['ade20k']
    assert model.input_size == (473, 473)
    model = models.build_model('pspnet_resnet50', 'voc', files[21],
                               input_size=97)
    assert model.dataset is registry.DATASETS['voc']
    assert model.input_size == (97, 97)
    model = models.build_model('pspnet_resnet50', None, files[7])
    assert model.dataset is None and model.n_class == 7
    with pytest.raises(UserError, match='no published voc weights'):
        models.build_model('pspnet_resnet50', 'voc')
    with pytest.raises(UserError, match='hold no classifier'):
        models.build_model('pspnet_resnet50', 'voc', 'imagenet')
