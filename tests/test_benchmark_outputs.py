"""Benchmark-server prediction files and the benchmarks' own scores,
checked against cityscapesScripts' evaluator, and the test splits."""

import glob
import json
import os

import chainer
import numpy as np
import pytest
from PIL import Image

import eval_semantic_segmentation as script
from pspnet import PSPNetResNet50
from pspnet.datasets import ADE20KSemanticSegmentationDataset
from pspnet.datasets import CityscapesSemanticSegmentationDataset
from pspnet.datasets import voc_palette
from pspnet.datasets import VOCSemanticSegmentationDataset
from pspnet.evaluations import benchmark_scores
from pspnet.evaluations import calc_semantic_segmentation_confusion
from pspnet.evaluations import prediction_files
from tests.helpers import dataset_factory
from tests.helpers import random_weights

try:
    from cityscapesscripts.evaluation import \
        evalPixelLevelSemanticLabeling as official
except ImportError:  # pragma: no cover - depends on the extras
    official = None

needs_official = pytest.mark.skipif(
    official is None, reason='cityscapesscripts is not installed; install '
    'the extras: pip install --no-build-isolation -r '
    'requirements-extras.txt')


def official_scores(cityscapes_root, prediction_dir):
    """cityscapesScripts' four averages on the val split of a tree."""
    args = official.args
    args.predictionPath = prediction_dir
    args.predictionWalk = None
    args.JSONOutput = False
    args.quiet = True
    args.evalInstLevelScore = True
    gts = sorted(glob.glob(os.path.join(cityscapes_root, 'gtFine', 'val', '*',
                                        '*_gtFine_labelIds.png')))
    predictions = [official.getPrediction(args, gt) for gt in gts]
    result = official.evaluateImgLists(predictions, gts, args)
    return {'miou': result['averageScoreClasses'],
            'iiou': result['averageScoreInstClasses'],
            'category_miou': result['averageScoreCategories'],
            'category_iiou': result['averageScoreInstCategories'],
            'class_iiou': result['classInstScores'],
            'category_iou': result['categoryScores']}


def _noisy_predictions(rng, label, fraction):
    """Train ids: the ground truth with ``fraction`` of the pixels
    (and every ignored one) replaced by random classes."""
    pred = np.where(label >= 0, label, rng.randint(0, 19, label.shape))
    flip = rng.rand(*label.shape) < fraction
    return np.where(flip, rng.randint(0, 19, label.shape), pred)


@needs_official
@pytest.mark.parametrize('seed', range(4))
def test_cityscapes_scores_equal_cityscapesscripts(tmp_path, seed):
    """Random trees (sizes, cities, crowd regions, caravan and trailer
    instances, which are not evaluated) and predictions that are right in
    part: the streaming sums give the evaluator's figures."""
    rng = np.random.RandomState(seed)
    size = (int(rng.randint(24, 80)), int(rng.randint(24, 120)))
    root = dataset_factory.make_cityscapes(
        str(tmp_path / 'cs'), splits=('val',), cities=('aachen', 'lindau'),
        n_per_city=int(rng.randint(1, 4)), size=size, instances=True,
        extra_ids=(29, 30) if seed % 2 else (), seed=seed)
    dataset = CityscapesSemanticSegmentationDataset(root, split='val')
    assert dataset.has_instances
    writer = prediction_files.PredictionWriter(
        str(tmp_path / 'pred'), dataset.img_paths, 'cityscapes', 19, [])
    confusion = np.zeros((19, 19), dtype=np.int64)
    instances = benchmark_scores.InstanceIoUAccumulator()
    for i in range(len(dataset)):
        _, label = dataset[i]
        pred = _noisy_predictions(rng, label, rng.uniform(0.1, 0.9))
        writer.write(i, pred)
        confusion += calc_semantic_segmentation_confusion([pred], [label],
                                                          19)
        instances.update(pred, dataset.get_instance_ids(i))
    ours = benchmark_scores.cityscapes_scores(confusion, instances)
    theirs = official_scores(root, str(tmp_path / 'pred'))
    assert 0 < theirs['iiou'] < 1
    assert ours['miou'] == pytest.approx(theirs['miou'], abs=1e-6)
    assert ours['iiou_mean'] == pytest.approx(theirs['iiou'], abs=1e-6)
    assert ours['category_miou'] == pytest.approx(theirs['category_miou'],
                                                  abs=1e-6)
    assert ours['category_iiou_mean'] == pytest.approx(
        theirs['category_iiou'], abs=1e-6)
    for name, value in ours['iiou'].items():
        np.testing.assert_allclose(value, theirs['class_iiou'][name],
                                   atol=1e-6)
    for name, value in ours['category_iou'].items():
        np.testing.assert_allclose(value, theirs['category_iou'][name],
                                   atol=1e-6)


@pytest.fixture(scope='module')
def cityscapes(tmp_path_factory):
    root = tmp_path_factory.mktemp('bench')
    data = dataset_factory.make_cityscapes(
        str(root / 'cityscapes'), splits=('val', 'test'),
        cities=('aachen', 'bochum'), n_per_city=2, size=(48, 80),
        instances=True, extra_ids=(29,), seed=3)
    weights = str(root / 'sensitive.npz')
    model = random_weights.sensitive_model(PSPNetResNet50, 19, 64,
                                           np.random.RandomState(0))
    # Favour the classes with instances, so that instances are hit.
    model.head_conv2.b.array[11:] += 8000
    chainer.serializers.save_npz(weights, model)
    return {'root': root, 'data': data, 'weights': weights}


def _args(fixture, *extra):
    return ['--dataset', 'cityscapes', '--model', 'pspnet_resnet50',
            '--pretrained-model', fixture['weights'], '--input-size', '64',
            '--no-flip', '--data-dir', fixture['data']] + list(extra)


@needs_official
def test_script_scores_equal_cityscapesscripts(cityscapes, capsys):
    """End to end: the script's --json figures and its --save-predictions
    files, given to the official evaluator."""
    out = str(cityscapes['root'] / 'val.json')
    pred = str(cityscapes['root'] / 'val-pred')
    script.main(_args(cityscapes, '--json', out, '--save-predictions', pred))
    printed = capsys.readouterr().out
    with open(out) as f:
        record = json.load(f)
    theirs = official_scores(cityscapes['data'], pred)
    for key in ('miou', 'iiou', 'category_miou', 'category_iiou'):
        assert record[key] == pytest.approx(theirs[key], abs=1e-6), key
    assert 0 < record['iiou'] < 1
    assert '              mean iIoU : {:.4f}'.format(record['iiou']) in printed
    assert 'zip -qr' in printed and pred in printed
    assert not glob.glob(str(cityscapes['root'] / '*.progress*'))


def test_cityscapes_files_read_back(cityscapes, capsys):
    pred = str(cityscapes['root'] / 'files')
    color = str(cityscapes['root'] / 'color')
    script.main(_args(cityscapes, '--save-predictions', pred, '--save-color',
                      color, '--limit', '3'))
    capsys.readouterr()
    dataset = CityscapesSemanticSegmentationDataset(cityscapes['data'],
                                                    split='val')
    model = PSPNetResNet50(pretrained_model=cityscapes['weights'],
                           input_size=64)
    model.flip = False
    files = sorted(glob.glob(os.path.join(pred, '*', '*.png')))
    assert len(files) == 3
    for i in range(3):
        img, _ = dataset[i]
        city = os.path.basename(os.path.dirname(dataset.img_paths[i]))
        stem = os.path.basename(dataset.img_paths[i])[:-len(
            '_leftImg8bit.png')]
        path = os.path.join(pred, city, stem + '_pred_labelIds.png')
        with Image.open(path) as f:
            assert f.mode == 'L' and f.size == (img.shape[2], img.shape[1])
            values = np.asarray(f)
        expected = model.predict([img])[0]
        # label ids, not train ids
        np.testing.assert_array_equal(
            prediction_files.from_file_values(values, 'cityscapes'), expected)
        ids = {label.id: label.train_id for label in
               dataset_factory.cityscapes_labels if not label.ignore_in_eval}
        assert set(np.unique(values)) <= set(ids)
        with Image.open(os.path.join(color, city,
                                     stem + '_pred_labelIds.png')) as f:
            assert f.mode == 'RGB'


def test_cityscapes_test_split(cityscapes, capsys):
    pred = str(cityscapes['root'] / 'test-pred')
    script.main(_args(cityscapes, '--split', 'test', '--save-predictions',
                      pred))
    out = capsys.readouterr().out
    assert 'no labels in the test split of cityscapes' in out
    assert 'no metrics' in out and 'IoU' not in out
    assert len(glob.glob(os.path.join(pred, '*', '*_pred_labelIds.png'))) == 4
    with pytest.raises(SystemExit) as exit_info:
        script.main(_args(cityscapes, '--split', 'test'))
    assert exit_info.value.code == 2
    assert '--save-predictions' in capsys.readouterr().err


def test_ade20k_files_and_score(tmp_path, capsys):
    data = dataset_factory.make_ade20k(str(tmp_path / 'ade'), splits=('val',),
                                       n_images=2, size=(40, 56))
    test_dir = os.path.join(data, 'release_test', 'testing')
    os.makedirs(test_dir)
    for k in range(2):
        os.link(glob.glob(os.path.join(
            data, 'ADEChallengeData2016', 'images', 'validation',
            '*.jpg'))[k], os.path.join(test_dir,
                                       'ADE_test_{:08d}.jpg'.format(k + 1)))
    weights = str(tmp_path / 'ade.npz')
    chainer.serializers.save_npz(weights, random_weights.sensitive_model(
        PSPNetResNet50, 150, 64, np.random.RandomState(1)))
    base = ['--dataset', 'ade20k', '--model', 'pspnet_resnet50',
            '--pretrained-model', weights, '--input-size', '64',
            '--data-dir', data, '--no-flip']
    out = str(tmp_path / 'ade.json')
    script.main(base + ['--json', out, '--save-predictions',
                        str(tmp_path / 'val')])
    printed = capsys.readouterr().out
    with open(out) as f:
        record = json.load(f)
    assert record['scene_parsing_score'] == pytest.approx(
        (record['pixel_accuracy'] + record['miou']) / 2)
    assert '     SceneParsing score : {:.4f}'.format(
        record['scene_parsing_score']) in printed

    script.main(base + ['--split', 'release_test', '--save-predictions',
                        str(tmp_path / 'test')])
    assert 'no metrics' in capsys.readouterr().out
    dataset = ADE20KSemanticSegmentationDataset(data, split='release_test')
    assert not dataset.has_labels and len(dataset) == 2
    model = PSPNetResNet50(pretrained_model=weights, input_size=64)
    model.flip = False
    for i in range(2):
        path = str(tmp_path / 'test' / 'ADE_test_{:08d}.png'.format(i + 1))
        with Image.open(path) as f:
            assert f.mode == 'L'
            values = np.asarray(f)
        assert values.min() >= 1 and values.max() <= 150
        np.testing.assert_array_equal(
            values - 1, model.predict([dataset[i][0]])[0])


def test_voc_files_and_test_split(tmp_path, capsys):
    voc = dataset_factory.make_voc(str(tmp_path / 'voc'), splits=('val',),
                                   n_images=2, size=(40, 48))
    with open(os.path.join(voc, 'ImageSets', 'Segmentation',
                           'test.txt'), 'w') as f:
        f.write('2008_000001\n')
    os.link(os.path.join(voc, 'JPEGImages', '2007_000000.jpg'),
            os.path.join(voc, 'JPEGImages', '2008_000001.jpg'))
    weights = str(tmp_path / 'voc.npz')
    chainer.serializers.save_npz(weights, random_weights.sensitive_model(
        PSPNetResNet50, 21, 64, np.random.RandomState(2)))
    base = ['--dataset', 'voc', '--model', 'pspnet_resnet50',
            '--pretrained-model', weights, '--input-size', '64',
            '--data-dir', voc, '--no-flip']
    script.main(base + ['--split', 'test', '--save-predictions',
                        str(tmp_path / 'test')])
    out = capsys.readouterr().out
    assert 'no labels in the test split of voc' in out
    assert 'comp6_test_cls' in out
    with Image.open(str(tmp_path / 'test' / '2008_000001.png')) as f:
        assert f.mode == 'P'
        palette = f.getpalette()[:3 * 256]
        values = np.asarray(f)
    assert palette == [c for color in voc_palette for c in color]
    model = PSPNetResNet50(pretrained_model=weights, input_size=64)
    model.flip = False
    dataset = VOCSemanticSegmentationDataset(voc, split='test')
    assert not dataset.has_labels
    np.testing.assert_array_equal(values, model.predict([dataset[0][0]])[0])


@pytest.mark.parametrize('n_class', [5, 300])
def test_index_format_reads_back(tmp_path, n_class):
    """Datasets of no benchmark: class ids, 16-bit above 256 classes, names
    after the images' paths below their common folder."""
    rng = np.random.RandomState(n_class)
    img_paths = [str(tmp_path / 'imgs' / 'a' / 'x.jpg'),
                 str(tmp_path / 'imgs' / 'b' / 'x.jpg')]
    colors = [tuple(rng.randint(0, 256, 3)) for _ in range(n_class)]
    writer = prediction_files.PredictionWriter(
        str(tmp_path / 'out'), img_paths, None, n_class, colors,
        str(tmp_path / 'color'))
    preds = [rng.randint(0, n_class, (int(rng.randint(1, 30)),
                                      int(rng.randint(1, 30))))
             for _ in img_paths]
    for i, pred in enumerate(preds):
        writer.write(i, pred)
    for name, pred in zip(('a/x.png', 'b/x.png'), preds):
        with Image.open(str(tmp_path / 'out' / name)) as f:
            np.testing.assert_array_equal(np.asarray(f).astype(int), pred)
        with Image.open(str(tmp_path / 'color' / name)) as f:
            np.testing.assert_array_equal(
                np.asarray(f), np.array(colors, dtype=np.uint8)[pred])


def test_output_folders_are_checked_first(cityscapes, tmp_path, capsys):
    a_file = tmp_path / 'file'
    a_file.write_text('x')
    for extra, message in (
            (['--save-predictions', str(a_file)], 'is a file'),
            (['--save-predictions', str(tmp_path / 'no' / 'dir')],
             'does not exist'),
            (['--json', str(tmp_path)], 'is a folder'),
            (['--save-color', str(tmp_path / 'c')], 'needs --save-pred')):
        argv = _args(cityscapes)[:-1] + [str(tmp_path / 'nothing')]
        with pytest.raises(SystemExit) as exit_info:
            script.main(argv + extra)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
