"""Evaluation checkpoints (pspnet.evaluations.checkpoints) and the instance
files of Cityscapes, on small generated inputs."""

import os

import numpy as np
import pytest

from pspnet.datasets import CityscapesSemanticSegmentationDataset
from pspnet.errors import UserError
from pspnet.evaluations import checkpoints
from tests.helpers import dataset_factory


def _state(rng, instances=True, n_done=3):
    state = checkpoints.EvaluationState(19, instances=instances)
    state.confusion.matrix[:] = rng.randint(0, 10 ** 9, (19, 19))
    if instances:
        state.instances.class_sums[:] = rng.rand(19, 2) * 1e5
        state.instances.category_sums[:] = rng.rand(2, 2) * 1e5
    state.n_done = n_done
    return state


@pytest.mark.parametrize('instances', [False, True])
def test_checkpoint_round_trip_is_exact(tmp_path, instances):
    rng = np.random.RandomState(int(instances))
    state = _state(rng, instances)
    path = checkpoints.checkpoint_path(str(tmp_path / 'out.json'))
    assert path == str(tmp_path / 'out.json.progress.npz')
    fingerprint = checkpoints.fingerprint(model='m', scales=[1.0])
    checkpoints.save_checkpoint(path, state, fingerprint)
    loaded = checkpoints.EvaluationState(19, instances=instances)
    assert checkpoints.load_checkpoint(path, loaded, fingerprint, 5)
    for key, value in state.arrays().items():
        np.testing.assert_array_equal(loaded.arrays()[key], value)
        assert loaded.arrays()[key].dtype == value.dtype
    assert os.listdir(str(tmp_path)) == ['out.json.progress.npz']
    checkpoints.remove_checkpoint(path)
    assert not os.listdir(str(tmp_path))
    assert not checkpoints.load_checkpoint(path, loaded, fingerprint, 5)


def test_checkpoint_refusals(tmp_path):
    rng = np.random.RandomState(0)
    path = str(tmp_path / 'c.npz')
    checkpoints.save_checkpoint(path, _state(rng), checkpoints.fingerprint(
        model='a', flip=True, scales=None))
    fresh = checkpoints.EvaluationState(19, instances=True)
    with pytest.raises(UserError, match=r'\(flip, model differ\)'):
        checkpoints.load_checkpoint(path, fresh, checkpoints.fingerprint(
            model='b', flip=False, scales=None), 5)
    with pytest.raises(UserError, match='counts 3 images of 2'):
        checkpoints.load_checkpoint(path, fresh, checkpoints.fingerprint(
            model='a', flip=True, scales=None), 2)
    with pytest.raises(UserError, match='corrupt'):
        checkpoints.load_checkpoint(path, checkpoints.EvaluationState(19),
                                 checkpoints.fingerprint(model='a', flip=True,
                                                      scales=None), 5)
    with open(path, 'r+b') as f:
        f.truncate(100)
    with pytest.raises(UserError, match='corrupt.*delete it'):
        checkpoints.load_checkpoint(path, fresh, '{}', 5)


def test_merge_states_in_rank_order():
    rng = np.random.RandomState(1)
    states = [_state(rng).arrays() for _ in range(3)]
    total = checkpoints.merge_states(states)
    np.testing.assert_array_equal(
        total['confusion'], sum(s['confusion'] for s in states))
    expected = (states[0]['instance_class_sums']
                + states[1]['instance_class_sums']) \
        + states[2]['instance_class_sums']
    assert (total['instance_class_sums'] == expected).all()


def test_dataset_digest_ignores_the_location(tmp_path):
    a = dataset_factory.make_cityscapes(str(tmp_path / 'a'), splits=('val',),
                                        n_per_city=1, size=(8, 8))
    b = dataset_factory.make_cityscapes(str(tmp_path / 'b'), splits=('val',),
                                        n_per_city=1, size=(8, 8), seed=1)
    c = dataset_factory.make_cityscapes(str(tmp_path / 'c'), splits=('val',),
                                        cities=('aachen', 'bremen', 'ulm'),
                                        n_per_city=1, size=(8, 8))
    da, db, dc = (CityscapesSemanticSegmentationDataset(d, split='val')
                  for d in (a, b, c))
    assert checkpoints.dataset_digest(da, 3) == checkpoints.dataset_digest(db, 3)
    assert checkpoints.dataset_digest(da, 3) != checkpoints.dataset_digest(dc, 3)
    assert checkpoints.dataset_digest(da, 3) != checkpoints.dataset_digest(da, 2)


def test_cityscapes_instance_files(tmp_path):
    root = dataset_factory.make_cityscapes(
        str(tmp_path), splits=('val',), n_per_city=1, size=(16, 24),
        instances=True)
    dataset = CityscapesSemanticSegmentationDataset(root, split='val')
    assert dataset.has_instances
    ids = dataset.get_instance_ids(0)
    _, label = dataset[0]
    assert ids.shape == label.shape and ids.max() > 1000
    os.remove(dataset.instance_paths[1])
    with pytest.raises(UserError, match='instanceIds.png is missing'):
        CityscapesSemanticSegmentationDataset(root, split='val')
    for path in dataset.instance_paths:
        if os.path.exists(path):
            os.remove(path)
    assert not CityscapesSemanticSegmentationDataset(
        root, split='val').has_instances
