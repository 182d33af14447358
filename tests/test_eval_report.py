"""The evaluation report (eval_semantic_segmentation.py --report DIR): its
numbers (pspnet.evaluations.report), pictures and page
(pspnet.evaluation_report), on generated label maps; then end to end on
a tiny generated dataset with random weights (ResNet50, input size 64),
with one process and under mpiexec -n 2."""

import csv
import errno
import glob
import html.parser
import io
import os
import shutil
import urllib.parse

import chainer
import numpy as np
import pytest
from PIL import Image

import eval_semantic_segmentation as script
from pspnet import atomic
from pspnet import evaluation_report
from pspnet import PSPNetResNet50
from pspnet import visualizations
from pspnet.datasets import CityscapesSemanticSegmentationDataset
from pspnet.errors import UserError
from pspnet.evaluations import calc_semantic_segmentation_confusion
from pspnet.evaluations import checkpoints
from pspnet.evaluations import report
from tests.helpers import dataset_factory
from tests.helpers import random_weights
from tests.helpers.files import read_bytes
from tests.helpers.eval_runs import MPIEXEC
from tests.helpers.eval_runs import run_eval
from tests.helpers.files import folder_tree



# The numbers ---------------------------------------------------------------

def _random_pair(rng, n_class):
    shape = (rng.randint(1, 30), rng.randint(1, 30))
    gt = rng.randint(-1, n_class, shape)
    pred = rng.randint(0, n_class, shape)
    return pred, gt


def _direct_scores(pred, gt, n_class):
    """The scores of one image, class by class with masks."""
    counted = gt >= 0
    pixels = int(counted.sum())
    correct = int((counted & (pred == gt)).sum())
    ious = []
    for c in range(n_class):
        truth, guess = counted & (gt == c), counted & (pred == c)
        union = (truth | guess).sum()
        if union:
            ious.append((truth & guess).sum() / union)
    return pixels, correct, np.mean(ious) if ious else np.nan


@pytest.mark.parametrize('seed', range(8))
def test_image_scores_equal_a_direct_computation(seed):
    rng = np.random.RandomState(seed)
    n_class = rng.randint(1, 12)
    pred, gt = _random_pair(rng, n_class)
    if seed == 0:
        gt[:] = -1  # nothing labelled: NaN
    state = checkpoints.EvaluationState(n_class)
    state.add_image(pred, gt)
    pixels, correct, iou = _direct_scores(pred, gt, n_class)
    assert state.rows.pixels == [pixels] and state.rows.correct == [correct]
    if np.isnan(iou):
        assert np.isnan(state.rows.iou[0]) and seed == 0
    else:
        assert state.rows.iou[0] == pytest.approx(iou, rel=1e-12)
    np.testing.assert_array_equal(state.confusion.matrix,
                                  calc_semantic_segmentation_confusion(
                                      [pred], [gt], n_class))


def test_rows_in_checkpoints_and_merged_in_rank_order(tmp_path):
    rng = np.random.RandomState(3)
    states = []
    for n_images in (3, 2):
        state = checkpoints.EvaluationState(5)
        for _ in range(n_images):
            state.add_image(*_random_pair(rng, 5))
        state.n_done = n_images
        states.append(state)
    path = str(tmp_path / 'c.npz')
    checkpoints.save_checkpoint(path, states[0], 'f')
    loaded = checkpoints.EvaluationState(5)
    assert checkpoints.load_checkpoint(path, loaded, 'f', 3)
    assert (loaded.rows.pixels, loaded.rows.correct) == (
        states[0].rows.pixels, states[0].rows.correct)
    np.testing.assert_array_equal(loaded.rows.iou, states[0].rows.iou)
    total = checkpoints.merge_states([s.arrays() for s in states])
    assert list(total['image_pixels']) == (states[0].rows.pixels
                                           + states[1].rows.pixels)
    np.testing.assert_array_equal(
        total['image_iou'], states[0].rows.iou + states[1].rows.iou)
    np.testing.assert_array_equal(total['confusion'],
                                  states[0].confusion.matrix
                                  + states[1].confusion.matrix)
    # More rows than images done: corrupt.
    states[0].n_done = 2
    checkpoints.save_checkpoint(path, states[0], 'f')
    with pytest.raises(UserError, match='corrupt.*per-image rows'):
        checkpoints.load_checkpoint(path, checkpoints.EvaluationState(5),
                                    'f', 3)


def _format_1_checkpoint(path, state, fingerprint):
    """What the version before the per-image rows wrote."""
    arrays = {key: value for key, value in state.arrays().items()
              if key not in report.ImageRows.KEYS}
    arrays['fingerprint'] = np.array(fingerprint)
    arrays['version'] = np.array(1, dtype=np.int64)
    atomic.save_npz_atomic(path, arrays, compression=False)


def test_checkpoint_of_format_1_continues_without_rows(tmp_path):
    state = checkpoints.EvaluationState(4)
    state.add_image(*_random_pair(np.random.RandomState(0), 4))
    state.n_done = 1
    path = str(tmp_path / 'old.npz')
    _format_1_checkpoint(path, state, 'f')
    loaded = checkpoints.EvaluationState(4)
    assert checkpoints.load_checkpoint(path, loaded, 'f', 2)
    assert loaded.n_done == 1 and len(loaded.rows) == 0
    np.testing.assert_array_equal(loaded.confusion.matrix,
                                  state.confusion.matrix)


def test_worst_images_and_confused_pairs():
    pixels = [10, 0, 10, 10, 10, 10]
    correct = [5, 0, 9, 1, 5, 5]
    iou = [0.2, np.nan, 0.1, 0.1, 0.2, 0.05]
    # Lowest IoU, then lowest pixel accuracy, then the first; never an
    # image without labelled pixels.
    assert report.worst_images(pixels, correct, iou, 10) == [5, 3, 2, 0, 4]
    assert report.worst_images(pixels, correct, iou, 2) == [5, 3]
    assert report.worst_images(pixels, correct, iou, 0) == []
    confusion = np.array([[5, 3, 0], [3, 0, 1], [0, 7, 2]])
    assert report.confused_pairs(confusion, 3) == [
        (2, 1, 7, 7 / 9), (0, 1, 3, 3 / 8), (1, 0, 3, 3 / 4)]
    assert report.confused_pairs(np.diag([1, 2]), 5) == []


NASTY = ['road, wet', 'say "hi"', '<b>bold</b> & co', 'gr\u00f6\u00dfe \u00e9']


def test_csv_tables_read_back():
    rng = np.random.RandomState(1)
    confusion = rng.randint(0, 10 ** 9, (4, 4))
    rows = list(csv.reader(io.StringIO(report.confusion_csv(confusion,
                                                             NASTY))))
    assert rows[0] == [report.CORNER] + NASTY
    assert [row[0] for row in rows[1:]] == NASTY
    np.testing.assert_array_equal(
        np.array([row[1:] for row in rows[1:]], dtype=np.int64), confusion)
    names = ['a/x.png', 'b, c.png', 'd.png']
    text = report.per_image_csv(names, [100, 0, 7], [50, 0, 7],
                                [0.25, np.nan, 1.0])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [list(report.PER_IMAGE_HEADER),
                    ['a/x.png', '100', '0.500000', '0.250000'],
                    ['b, c.png', '0', 'nan', 'nan'],
                    ['d.png', '7', '1.000000', '1.000000']]


@pytest.mark.parametrize('n_class', [1, 3, 150])
def test_confusion_picture_is_written_at_a_sane_size(n_class):
    rng = np.random.RandomState(n_class)
    confusion = (rng.poisson(3, (n_class, n_class))
                 * (rng.rand(n_class, n_class) < 0.2)
                 + np.diag(rng.randint(10, 1000, n_class)))
    confusion[n_class // 2] = 0  # a class without pixels: a grey row
    names, _ = visualizations.label_names_and_colors(n_class)
    files = evaluation_report.report_files(
        [('dataset', 'x')], confusion, names, ['a.png'], [10], [5], [0.5],
        [])
    with Image.open(io.BytesIO(files['confusion_matrix.png'])) as picture:
        width, height = picture.size
    # Cells of at least 10 pixels at 150 classes, and not a poster.
    assert 400 < width < 4000 and 300 < height < 3000, (width, height)
    if n_class == 150:
        assert min(width, height) > 150 * 10
    assert len(files['confusion_matrix.png']) < 3 * 10 ** 6


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.text = [], []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ('href', 'src'):
                self.links.append(value)

    def handle_data(self, data):
        self.text.append(data)


def _page_links(folder):
    parser = _Links()
    with open(os.path.join(folder, 'index.html'), encoding='utf-8') as f:
        parser.feed(f.read())
    return parser


def _check_page(folder):
    """Every href and src of index.html is a relative path to a file of
    the report; returns the parser."""
    parser = _page_links(folder)
    assert parser.links
    for link in parser.links:
        parts = urllib.parse.urlsplit(link)
        assert not parts.scheme and not parts.netloc and not \
            link.startswith('/'), link
        path = os.path.join(folder, urllib.parse.unquote(parts.path))
        assert os.path.isfile(path), link
    return parser


def test_page_links_exist_and_names_are_escaped(tmp_path):
    rng = np.random.RandomState(2)
    n_class = len(NASTY)
    confusion = rng.randint(0, 100, (n_class, n_class))
    gt = rng.randint(-1, n_class, (12, 20))
    pred = rng.randint(0, n_class, (12, 20))
    names = ['a/b c#1.png', 'x?&<y>.png', 'ü.png']
    colors = visualizations.generate_label_colors(n_class)
    pictures = [(k, evaluation_report.worst_picture(
        np.zeros((3, 12, 20)), gt, pred, NASTY, colors, 'title'))
        for k in (2, 0)]
    files = evaluation_report.report_files(
        [('dataset', '<x>')], confusion, NASTY, names, [240, 240, 240],
        [10, 20, 30], [0.1, 0.2, 0.3], pictures)
    folder = str(tmp_path / 'report')
    evaluation_report.write_report(folder, files)
    parser = _check_page(folder)
    # Named by rank and image, other characters than [A-Za-z0-9._-] as _.
    assert sorted(os.listdir(os.path.join(folder, 'worst'))) == [
        '1__.png', '2_a_b_c_1.png']
    assert [link for link in parser.links if link.startswith('worst')] == [
        'worst/1__.png'] * 2 + ['worst/2_a_b_c_1.png'] * 2
    text = ''.join(parser.text)
    for name in NASTY + [names[0], names[2], '<x>']:
        assert name in text  # written escaped, read back whole
    with open(os.path.join(folder, 'index.html'), encoding='utf-8') as f:
        assert '<b>' not in f.read()
    assert sorted(os.listdir(folder)) == sorted(
        list(report.FILES) + [report.WORST_FOLDER])


def test_report_folder_checks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = str(tmp_path / 'report')
    report.check_report_folder(folder)  # new
    os.makedirs(folder)
    report.check_report_folder(folder)  # empty
    files = {'index.html': b'old', 'worst/1_a.png': b'old',
             'worst/2_b.png': b'old'}
    evaluation_report.write_report(folder, files)
    report.check_report_folder(folder)  # an earlier report
    cases = [
        (str(tmp_path / 'no' / 'r'), {}, 'does not exist'),
        (str(tmp_path / 'report' / 'index.html'), {}, 'is a file'),
        (str(tmp_path), {}, 'holds the current folder'),
        (folder, {'folders': [('--save-predictions', folder + '/pred')]},
         'overlap'),
        (folder + '/sub', {'folders': [('--save-color', folder)]}, 'overlap'),
        (folder, {'files': [('--json', folder + '/x.json')]},
         'lies in --report'),
    ]
    for path, kwargs, message in cases:
        with pytest.raises(UserError, match=message):
            report.check_report_folder(path, **kwargs)
    for extra in ('notes.txt', 'worst/x.jpg', 'worst/sub/'):
        path = os.path.join(folder, extra)
        if extra.endswith('/'):
            os.makedirs(path)
        else:
            with open(path, 'w') as f:
                f.write('mine')
        with pytest.raises(UserError, match='no file of a report'):
            report.check_report_folder(folder)
        (os.rmdir if extra.endswith('/') else os.remove)(path)
    report.check_report_folder(folder)
    # A new report replaces the earlier one whole.
    evaluation_report.write_report(folder, {'index.html': b'new'})
    assert os.listdir(folder) == ['index.html']


def test_a_report_that_cannot_be_written_leaves_nothing(tmp_path,
                                                       monkeypatch):
    folder = str(tmp_path / 'report')
    evaluation_report.write_report(folder, {'index.html': b'earlier'})
    written = []
    write = atomic.write_atomic

    def full_disk(path, function):
        if written:
            raise OSError(errno.ENOSPC, 'No space left on device')
        written.append(path)
        write(path, function)
    monkeypatch.setattr(atomic, 'write_atomic', full_disk)
    with pytest.raises(UserError, match='free some space'):
        evaluation_report.write_report(
            folder, {'index.html': b'new', 'per_image.csv': b'new'})
    assert os.listdir(str(tmp_path)) == ['report']  # no temporary left
    with open(os.path.join(folder, 'index.html'), 'rb') as f:
        assert f.read() == b'earlier'


# End to end ----------------------------------------------------------------

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('report')
    cityscapes = dataset_factory.make_cityscapes(
        str(root / 'cityscapes'), splits=('val', 'test'),
        cities=('aachen', 'bochum'), n_per_city=2, size=(40, 56), seed=3)
    model = random_weights.sensitive_model(PSPNetResNet50, 19, 64,
                                           np.random.RandomState(7))
    weights = str(root / 'sensitive.npz')
    chainer.serializers.save_npz(weights, model)
    return {'root': root, 'cityscapes': cityscapes, 'weights': weights}


def _args(data, *extra):
    return ['--dataset', 'cityscapes', '--model', 'pspnet_resnet50',
            '--pretrained-model', data['weights'], '--input-size', '64',
            '--no-flip', '--data-dir', data['cityscapes']] + list(extra)




def _pixels(path):
    with Image.open(path) as picture:
        return np.asarray(picture.convert('RGB'))


def test_report_of_one_process_and_of_mpiexec_agree(data):
    """The report's numbers are those of the model's own predictions; two
    processes write the same CSV files, byte for byte, and the same
    pictures, pixel for pixel, as one."""
    if not os.path.exists(MPIEXEC):
        pytest.skip('mpiexec of the mpich wheel not installed')
    root = data['root']
    one, two = str(root / 'one'), str(root / 'two')
    result = run_eval(_args(data, '--report', one, '--report-worst', '3',
                        '--json', str(root / 'one.json')))
    assert result.returncode == 0, result.stderr
    assert 'report in ' in result.stdout
    assert not glob.glob(str(root / 'one*.progress*'))
    result = run_eval(_args(data, '--report', two, '--report-worst', '3'), mpi=2)
    assert result.returncode == 0, result.stderr
    one_tree, two_tree = folder_tree(one), folder_tree(two)
    assert set(one_tree) == set(two_tree)
    for name in ('confusion_matrix.csv', 'per_image.csv', 'index.html'):
        assert one_tree[name] == two_tree[name], name
    worst = sorted(glob.glob(os.path.join(one, 'worst', '*.png')))
    assert len(worst) == 3
    for path in worst + [os.path.join(one, 'confusion_matrix.png')]:
        relative = os.path.relpath(path, one)
        np.testing.assert_array_equal(_pixels(path),
                                      _pixels(os.path.join(two, relative)))
    _check_page(one)

    # The numbers: the model's predictions, image by image.
    model = PSPNetResNet50(pretrained_model=data['weights'], input_size=64)
    model.flip = False
    dataset = CityscapesSemanticSegmentationDataset(data['cityscapes'],
                                                    split='val')
    rows = list(csv.DictReader(io.StringIO(one_tree['per_image.csv']
                                           .decode('utf-8'))))
    assert [row['image'] for row in rows] == [
        os.path.relpath(p, os.path.dirname(os.path.dirname(p)))
        for p in dataset.img_paths]
    scores = []
    confusion = np.zeros((19, 19), np.int64)
    for i, row in enumerate(rows):
        img, gt = dataset[i]
        pred = model.predict([img])[0]
        confusion += calc_semantic_segmentation_confusion([pred], [gt], 19)
        pixels, correct, iou = _direct_scores(pred, gt, 19)
        assert int(row['labelled_pixels']) == pixels
        assert float(row['pixel_accuracy']) == pytest.approx(
            correct / pixels, abs=1e-6)
        assert float(row['iou_present']) == pytest.approx(iou, abs=1e-6)
        scores.append((iou, correct / pixels, i))
    table = list(csv.reader(io.StringIO(
        one_tree['confusion_matrix.csv'].decode('utf-8'))))
    np.testing.assert_array_equal(
        np.array([r[1:] for r in table[1:]], dtype=np.int64), confusion)
    # The worst three, worst first, named after their images.
    expected = [rows[i]['image'] for _, _, i in sorted(scores)[:3]]
    assert [os.path.basename(p).split('_', 1)[1] for p in worst] == [
        name.replace('/', '_').replace('.png', '') + '.png'
        for name in expected]


def test_report_refusals_leave_nothing(data, tmp_path, capsys):
    root = tmp_path / 'outs'
    root.mkdir()
    foreign = root / 'used'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('mine')
    empty = root / 'empty'
    empty.mkdir()
    cases = [
        (['--split', 'test', '--report', str(root / 'r'),
          '--save-predictions', str(root / 'p')], 'nothing to report'),
        (['--report-worst', '2'], '--report-worst needs --report'),
        (['--report', str(foreign)], 'no file of a report'),
        (['--report', str(empty), '--save-predictions',
          str(empty / 'pred')], 'overlap'),
        (['--report', str(empty), '--json', str(empty / 'x.json')],
         'lies in --report'),
    ]
    for extra, message in cases:
        before = folder_tree(str(root))
        with pytest.raises(SystemExit) as exit_info:
            script.main(_args(data, *extra))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith('error: ') \
            and message in err[0], err
        assert folder_tree(str(root)) == before, message
    with pytest.raises(SystemExit):
        script.main(_args(data, '--report-worst', '-1', '--report', 'x'))
    assert 'expected 0 or a positive integer' in capsys.readouterr().err


def test_report_continues_from_checkpoints(data, tmp_path, capsys):
    """A run that fails at its third image keeps its checkpoint (beside the
    report folder, the only output) and no report; the same command,
    once the image is repaired, writes the report of an uninterrupted run.
    A checkpoint of the version before the per-image rows is refused with
    --report, and continued without it."""
    copy = str(tmp_path / 'cityscapes')
    shutil.copytree(data['cityscapes'], copy)
    image = CityscapesSemanticSegmentationDataset(copy,
                                                  split='val').img_paths[2]
    content = read_bytes(image)
    with open(image, 'wb') as f:
        f.write(b'broken')
    folder = str(tmp_path / 'report')
    argv = _args(data)[:-1] + [copy, '--report', folder, '--report-worst',
                               '2', '--checkpoint-interval', '0']
    with pytest.raises(SystemExit):
        script.main(argv)
    assert 'cannot read image' in capsys.readouterr().err
    checkpoint = checkpoints.checkpoint_path(folder)
    assert sorted(os.listdir(str(tmp_path))) == sorted(
        ['cityscapes', os.path.basename(checkpoint)])
    kept = read_bytes(checkpoint)

    # The same state as written by the version before the rows.
    with np.load(checkpoint) as archive:
        state = checkpoints.EvaluationState(19)
        state.load_arrays({key: archive[key] for key in archive.files})
        fingerprint = str(archive['fingerprint'])
    assert state.n_done == 2 and len(state.rows) == 2
    _format_1_checkpoint(checkpoint, state, fingerprint)
    with open(image, 'wb') as f:
        f.write(content)
    with pytest.raises(SystemExit):
        script.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'earlier version' in err[0] \
        and 'without --report' in err[0], err
    assert not os.path.exists(folder)

    with open(checkpoint, 'wb') as f:
        f.write(kept)
    script.main(argv)
    assert 'continuing from' in capsys.readouterr().err
    assert not os.path.exists(checkpoint)
    whole = str(tmp_path / 'whole')
    script.main(argv[:argv.index('--report') + 1] + [whole]
                + argv[argv.index('--report') + 2:])
    capsys.readouterr()
    assert folder_tree(folder) == folder_tree(whole)
