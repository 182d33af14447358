import json
import math

import numpy as np
import pytest

from pspnet.evaluations import calc_semantic_segmentation_confusion
from pspnet.evaluations import calc_semantic_segmentation_iou
from pspnet.evaluations import eval_semantic_segmentation
from pspnet.evaluations import evaluate_model
from pspnet.evaluations import format_table
from pspnet.evaluations import semantic_segmentation_metrics
from pspnet.evaluations import SemanticSegmentationConfusion
from pspnet import mpi
from pspnet.evaluations import evaluator

# Two images, classes 0 to 3. Class 3 is in neither prediction nor truth
# (NaN IoU); class 2 is only predicted (IoU 0, NaN class accuracy).
PRED = [np.array([[0, 0, 1],
                  [1, 2, 0]], dtype=np.int32),
        np.array([[1, 1],
                  [0, 3]], dtype=np.int32)]
GT = [np.array([[0, 1, 1],
                [1, -1, -1]], dtype=np.int32),
      np.array([[1, 0],
                [0, -1]], dtype=np.int32)]
# Counted pixels (gt, pred): image 1: (0,0) (1,0) (1,1) (1,1);
# image 2: (1,1) (0,1) (0,0). Class 3 only appears where gt is ignored.
EXPECTED_CONFUSION = np.array([[2, 1, 0, 0],
                               [1, 3, 0, 0],
                               [0, 0, 0, 0],
                               [0, 0, 0, 0]], dtype=np.int64)


def test_confusion_by_hand():
    confusion = calc_semantic_segmentation_confusion(PRED, GT)
    assert confusion.dtype == np.int64
    np.testing.assert_array_equal(confusion, EXPECTED_CONFUSION)


def test_confusion_with_fixed_class_count():
    confusion = calc_semantic_segmentation_confusion(PRED, GT, n_class=6)
    assert confusion.shape == (6, 6)
    np.testing.assert_array_equal(confusion[:4, :4], EXPECTED_CONFUSION)
    assert confusion[4:].sum() == confusion[:, 4:].sum() == 0


def test_metrics_by_hand():
    result = eval_semantic_segmentation(iter(PRED), iter(GT))
    # IoU: class 0: 2 / (3 + 3 - 2); class 1: 3 / (4 + 4 - 3); 2: 0 / 0
    # (never counted: its only prediction is on an ignored pixel); 3: NaN.
    np.testing.assert_allclose(result['iou'][:2], [2 / 4, 3 / 5])
    assert np.isnan(result['iou'][2]) and np.isnan(result['iou'][3])
    np.testing.assert_allclose(result['miou'], (2 / 4 + 3 / 5) / 2)
    np.testing.assert_allclose(result['class_accuracy'][:2], [2 / 3, 3 / 4])
    assert np.isnan(result['class_accuracy'][2:]).all()
    np.testing.assert_allclose(result['mean_class_accuracy'],
                               (2 / 3 + 3 / 4) / 2)
    np.testing.assert_allclose(result['pixel_accuracy'], 5 / 7)


def test_class_only_predicted_has_zero_iou():
    pred = np.array([[0, 2]], dtype=np.int32)
    gt = np.array([[0, 0]], dtype=np.int32)
    result = eval_semantic_segmentation([pred], [gt])
    np.testing.assert_allclose(result['iou'][[0, 2]], [0.5, 0.0])
    assert np.isnan(result['iou'][1])
    assert np.isnan(result['class_accuracy'][2])
    np.testing.assert_allclose(result['miou'], 0.25)


def test_all_ignored_gives_nan_everywhere():
    result = eval_semantic_segmentation(
        [np.zeros((2, 2), np.int32)], [np.full((2, 2), -1, np.int32)])
    assert np.isnan(result['iou']).all()
    assert np.isnan(result['miou']) and np.isnan(result['pixel_accuracy'])


def test_calc_iou_from_matrix():
    iou = calc_semantic_segmentation_iou(EXPECTED_CONFUSION)
    np.testing.assert_allclose(iou[:2], [0.5, 0.6])
    assert np.isnan(iou[2:]).all()


def test_streaming_equals_one_shot_and_batch_split():
    rng = np.random.RandomState(0)
    preds = [rng.randint(0, 5, size=(7, 9)).astype(np.int32)
             for _ in range(6)]
    gts = [rng.randint(-1, 5, size=(7, 9)).astype(np.int32)
           for _ in range(6)]
    whole = calc_semantic_segmentation_confusion(preds, gts, n_class=5)
    first = calc_semantic_segmentation_confusion(preds[:2], gts[:2], 5)
    rest = calc_semantic_segmentation_confusion(preds[2:], gts[2:], 5)
    np.testing.assert_array_equal(whole, first + rest)
    confusion = SemanticSegmentationConfusion(5)
    for pred, gt in zip(preds, gts):
        confusion.update(pred, gt)
    np.testing.assert_array_equal(confusion.matrix, whole)
    assert whole.sum() == sum(int((gt >= 0).sum()) for gt in gts)


def test_growing_matrix_matches_largest_label():
    confusion = SemanticSegmentationConfusion()
    confusion.update(np.array([[0, 1]]), np.array([[1, 1]]))
    assert confusion.n_class == 2
    confusion.update(np.array([[4]]), np.array([[-1]]))
    assert confusion.n_class == 5
    assert confusion.matrix[1, 1] == 1 and confusion.matrix[1, 0] == 1


@pytest.mark.parametrize('pred, gt, message', [
    (np.zeros((2, 2), np.int32), np.zeros((2, 3), np.int32), 'shape'),
    (np.zeros((2,), np.int32), np.zeros((2,), np.int32), '2-D'),
    (np.full((1, 1), 3, np.int32), np.zeros((1, 1), np.int32),
     'out of range'),
    (np.full((1, 1), -1, np.int32), np.zeros((1, 1), np.int32),
     'negative'),
])
def test_bad_label_maps(pred, gt, message):
    with pytest.raises(ValueError, match=message):
        SemanticSegmentationConfusion(3).update(pred, gt)


def test_length_mismatch():
    with pytest.raises(ValueError, match='length'):
        calc_semantic_segmentation_confusion(PRED, GT[:1])


class _ShiftPredictor(object):
    """Stand-in model: predicts ``(ground truth + shift) % n`` from images
    that hold the ground truth in their first channel."""

    def __init__(self, n_class, shift):
        self.n_class, self.shift, self.calls = n_class, shift, []

    def predict(self, imgs):
        self.calls.append(len(imgs))
        return [((img[0].astype(np.int32) + self.shift) % self.n_class)
                for img in imgs]


def _dataset(n_images, n_class, rng):
    items = []
    for _ in range(n_images):
        gt = rng.randint(0, n_class, size=(5, 6)).astype(np.int32)
        img = np.repeat(gt[None].astype(np.float32), 3, axis=0)
        gt[rng.rand(5, 6) < 0.2] = -1
        items.append((img, gt))
    return items


@pytest.mark.parametrize('batchsize', [1, 2, 5])
def test_evaluate_model_streams_in_batches(batchsize):
    rng = np.random.RandomState(1)
    data = _dataset(5, 4, rng)
    model = _ShiftPredictor(4, 0)
    done = []
    confusion = evaluate_model(model, data, range(5), 4,
                               batchsize=batchsize, progress=done.append)
    assert max(model.calls) <= batchsize and sum(model.calls) == 5
    assert done[-1] == 5
    # A perfect predictor: only the diagonal is filled.
    assert confusion.sum() == np.trace(confusion) == sum(
        int((gt >= 0).sum()) for _, gt in data)
    expected = calc_semantic_segmentation_confusion(
        [img[0].astype(np.int32) for img, _ in data],
        [gt for _, gt in data], n_class=4)
    np.testing.assert_array_equal(confusion, expected)


def test_evaluate_model_on_a_subset():
    data = _dataset(6, 3, np.random.RandomState(2))
    model = _ShiftPredictor(3, 1)
    part_a = evaluate_model(model, data, [0, 2, 4], 3)
    part_b = evaluate_model(model, data, [1, 3, 5], 3)
    whole = evaluate_model(model, data, range(6), 3)
    np.testing.assert_array_equal(part_a + part_b, whole)
    assert np.trace(whole) == 0


def test_format_table_is_chainercvs():
    metrics = semantic_segmentation_metrics(EXPECTED_CONFUSION)
    table = format_table(metrics, ['zero', 'one', 'two', 'three'])
    lines = table.splitlines()
    assert lines[0] == '                   zero : 0.5000'
    assert lines[1] == '                    one : 0.6000'
    assert lines[2] == '                    two : nan'
    assert lines[4] == '=' * 34
    assert lines[5] == '               mean IoU : 0.5500'
    assert lines[6] == ' Class average accuracy : {:.4f}'.format(
        (2 / 3 + 3 / 4) / 2)
    assert lines[7] == 'Global average accuracy : {:.4f}'.format(5 / 7)
    assert len(lines) == 8 and table.endswith('\n')


def test_metrics_record_and_json(tmp_path):
    metrics = semantic_segmentation_metrics(EXPECTED_CONFUSION)
    record = evaluator.metrics_record(metrics, 2, 'abcd', EXPECTED_CONFUSION)
    path = str(tmp_path / 'm.json')
    evaluator.write_json(record, path)
    with open(path) as f:
        loaded = json.load(f)
    assert loaded['iou'][2] is None and loaded['class_accuracy'][3] is None
    assert math.isclose(loaded['miou'], 0.55)
    assert loaded['n_images'] == 2
    assert loaded['confusion'] == EXPECTED_CONFUSION.tolist()
    assert set(loaded) >= {'miou', 'iou', 'mean_class_accuracy',
                           'class_accuracy', 'pixel_accuracy', 'n_images'}
    assert [p.name for p in tmp_path.iterdir()] == ['m.json']


@pytest.mark.parametrize('env, expected', [
    ({}, False),
    ({'PMI_SIZE': '1'}, False),
    ({'PMI_SIZE': '2'}, True),
    ({'OMPI_COMM_WORLD_SIZE': '4'}, True),
    ({'MV2_COMM_WORLD_SIZE': 'x'}, False),
])
def test_mpi_launch_detection(monkeypatch, env, expected):
    for name in ('PMI_SIZE', 'OMPI_COMM_WORLD_SIZE', 'MV2_COMM_WORLD_SIZE'):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert mpi.launched_by_mpi() is expected


def test_single_process_helpers():
    assert list(mpi.shard_indices(3, None)) == [0, 1, 2]
    matrix = np.arange(4).reshape(2, 2)
    assert mpi.sum_over_processes(matrix, None) is matrix
    assert mpi.agree(None, lambda: 5) == 5
    assert mpi.abort_on_error(None, lambda: 6) == 6
