"""prepare_dataset.py: COCO, labelme and CVAT exports made into described
datasets, checked against pycocotools' own masks and labelme's drawing;
every refusal one line, exit status 2, nothing written; colour-coded
label maps (``"label_format": "rgb"``); the preview; and one path from a
COCO export through training under mpiexec, evaluation and the demo."""

import base64
import csv
import filecmp
import io
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from PIL import ImageDraw

import prepare_dataset
from pspnet import atomic
from pspnet.annotations import coco
from pspnet.annotations import output
from pspnet.apps import prepare
from pspnet.datasets import base
from pspnet.datasets import registry
from pspnet.errors import UserError
from pspnet.training import loader
from tests.helpers import annotation_factory as factory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
SEEDS = (0, 1, 2, 3)


# Label-check caches go to a temporary dataset root.
pytestmark = pytest.mark.usefixtures('chainer_dataset_root')


def run(argv, capsys):
    """prepare_dataset.py in this process: (exit status, stdout, stderr)."""
    try:
        prepare_dataset.main(argv + (['--no-progress'] if argv[0] != 'x'
                                     else []))
        code = 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(argv, capsys, *words):
    """Run, expect one ``error:`` line holding ``words``, exit status 2,
    and no --out folder nor temporary folder beside it."""
    code, out, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, out, err)
    assert lines[0].startswith('error: '), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    target = argv[argv.index('--out') + 1]
    assert not os.path.exists(target), os.listdir(target)
    parent = os.path.dirname(os.path.abspath(target))
    if os.path.isdir(parent):
        assert not [n for n in os.listdir(parent)
                    if n.startswith(atomic.TEMP_PREFIX)]
    return lines[0]


def read_png(path):
    return np.asarray(Image.open(path)).astype(np.int64)


# -- COCO -------------------------------------------------------------------

def coco_expected(json_path, crowd='ignore'):
    """{file_name: (H, W) expected label map} from pycocotools' own
    ``COCO.annToMask``: background 0, categories by id from 1, drawn
    largest first (ties in file order), crowd regions 255."""
    from pycocotools.coco import COCO
    api = COCO(json_path)
    cats = sorted(api.cats)
    names = [api.cats[c]['name'] for c in cats]
    value = {c: (['background'] + [n for n in names if n != 'background'])
             .index(api.cats[c]['name']) for c in cats}
    expected = {}
    for img in api.dataset['images']:
        anns = [a for a in api.dataset['annotations']
                if a['image_id'] == img['id']]
        masks = [api.annToMask(a).astype(bool) for a in anns]
        order = sorted(range(len(anns)), key=lambda j: -masks[j].sum())
        label = np.zeros((img['height'], img['width']), dtype=np.int64)
        for j in order:
            crowd_region = anns[j].get('iscrowd', 0) and crowd == 'ignore'
            label[masks[j]] = 255 if crowd_region else value[
                anns[j]['category_id']]
        expected[img['file_name']] = label
    return expected


@pytest.mark.parametrize('seed', SEEDS)
def test_coco_export_matches_pycocotools(seed, tmp_path, capsys):
    rng = np.random.RandomState(seed)
    train = factory.make_coco(str(tmp_path / 'export'), rng, n_images=5)
    val = factory.make_coco(str(tmp_path / 'export'), rng, n_images=2,
                            name='val', first_id=50)
    out = str(tmp_path / 'out')
    code, text, err = run(['coco', '--train', train['json'], '--val',
                           val['json'], '--images', train['images'],
                           '--out', out], capsys)
    assert code == 0, err
    assert 'COCO export: 4 classes (background, dog, cat, 猫)' in text
    with open(os.path.join(out, 'dataset.json'), encoding='utf-8') as f:
        desc = json.load(f)
    assert desc['classes'] == ['background', 'dog', 'cat', '猫']
    assert desc['ignore_label'] == 255
    spec = registry.lookup(os.path.join(out, 'dataset.json'))
    for split, made in (('train', train), ('val', val)):
        expected = coco_expected(made['json'])
        assert len(expected) == len(made['data']['images'])
        ds = spec.get(split)
        assert len(ds) == len(expected)
        ds.check_labels()
        for file_name, label in expected.items():
            stem = os.path.splitext(file_name)[0]
            got = read_png(os.path.join(out, 'labels', split,
                                        *stem.split('/')) + '.png')
            np.testing.assert_array_equal(got, label, err_msg=file_name)
            assert filecmp.cmp(os.path.join(made['images'], file_name),
                               os.path.join(out, 'images', split, file_name),
                               shallow=False)
        # The items as training reads them: -1 where 255 was written.
        for i in range(len(ds)):
            name = os.path.relpath(ds.img_paths[i], os.path.join(
                out, 'images', split)).replace(os.sep, '/')
            np.testing.assert_array_equal(
                ds[i][1], np.where(expected[name] == 255, -1,
                                   expected[name]))


@pytest.mark.parametrize('seed', SEEDS[:2])
def test_coco_crowd_as_class(seed, tmp_path, capsys):
    rng = np.random.RandomState(seed)
    made = factory.make_coco(str(tmp_path / 'export'), rng, n_images=3)
    assert any(a['iscrowd'] for a in made['data']['annotations'])
    out = str(tmp_path / 'out')
    code, _, err = run(['coco', '--train', made['json'], '--crowd', 'class',
                        '--out', out, '--val-fraction', '0.34'], capsys)
    assert code == 0, err
    expected = coco_expected(made['json'], crowd='class')
    for split in ('train', 'val'):
        for path in registry.lookup(os.path.join(
                out, 'dataset.json')).get(split).label_paths:
            rel = os.path.relpath(path, os.path.join(out, 'labels', split))
            name = [n for n in expected
                    if os.path.splitext(n)[0] == os.path.splitext(
                        rel.replace(os.sep, '/'))[0]][0]
            got = read_png(path)
            np.testing.assert_array_equal(got, expected[name])
            assert 255 not in got


def _coco_file(path, images, annotations, categories=((1, 'thing'),)):
    data = {'images': images, 'annotations': annotations,
            'categories': [{'id': c, 'name': n} for c, n in categories]}
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f, ensure_ascii=False)
    return path


def _square(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def test_coco_smaller_instances_stay_on_top(tmp_path, capsys):
    """A small annotation listed before a large one overlapping it is
    still drawn over it; an RLE's hole shows what lies below."""
    rng = np.random.RandomState(0)
    factory.write_image(str(tmp_path / 'a.png'), (40, 30), rng)
    donut = np.zeros((30, 40), dtype=np.uint8)
    donut[5:25, 5:35] = 1
    donut[10:20, 12:28] = 0
    anns = [
        {'id': 1, 'image_id': 1, 'category_id': 2, 'iscrowd': 0,
         'segmentation': _square(18, 12, 22, 16)},
        {'id': 2, 'image_id': 1, 'category_id': 1, 'iscrowd': 0,
         'segmentation': _square(0, 0, 40, 30)},
        {'id': 3, 'image_id': 1, 'category_id': 3, 'iscrowd': 0,
         'segmentation': factory.compressed_rle(donut)},
    ]
    path = _coco_file(str(tmp_path / 'train.json'),
                      [{'id': 1, 'file_name': 'a.png', 'width': 40,
                        'height': 30}], anns,
                      ((1, 'wall'), (2, 'lamp'), (3, 'frame')))
    out = str(tmp_path / 'out')
    code, text, err = run(['coco', '--train', path, '--out', out], capsys)
    assert code == 0, err
    assert 'without annotations' not in text
    got = read_png(os.path.join(out, 'labels', 'train', 'a.png'))
    np.testing.assert_array_equal(got, coco_expected(path)['a.png'])
    assert got[14, 20] == 2  # the lamp, in the frame's hole, over the wall
    assert got[15, 14] == 1  # the frame's hole shows the wall
    assert got[7, 7] == 3  # the frame over the wall
    assert got[2, 2] == 1


def _coco_case(tmp_path, case):
    """A COCO export broken in one way: (argv, words of the error)."""
    rng = np.random.RandomState(1)
    made = factory.make_coco(str(tmp_path / 'export'), rng, n_images=3,
                             unicode_names=False)
    data = made['data']
    first = data['annotations'][0]
    image = data['images'][0]
    words = []
    extra = []
    if case == 'unknown category':
        first['category_id'] = 99
        words = ['unknown category id 99', 'annotation {}'.format(
            first['id'])]
    elif case == 'unknown image':
        first['image_id'] = 999
        words = ['image id 999']
    elif case == 'missing image':
        os.remove(os.path.join(made['images'], image['file_name']))
        words = ['does not exist', image['file_name']]
    elif case == 'another size':
        image['width'] += 3
        words = ['{}x{}'.format(image['width'], image['height'])]
    elif case == 'polygon outside':
        target = dict(first, segmentation=[[1, 1, 10, 1, 500, 12]],
                      image_id=image['id'])
        data['annotations'][0] = target
        words = ['(500, 12) lies outside', 'annotation']
    elif case == 'rle of another size':
        data['annotations'][0] = dict(first, image_id=image['id'],
                                      segmentation={'counts': [4, 5],
                                                    'size': [3, 3]})
        words = ['RLE mask is of size [3, 3]']
    elif case == 'rle counts':
        counts = factory.uncompressed_rle(np.zeros(
            (image['height'], image['width']), np.uint8))
        counts['counts'][-1] -= 1
        data['annotations'][0] = dict(first, image_id=image['id'],
                                      segmentation=counts)
        words = ['RLE counts']
    elif case == 'compressed rle counts':
        small = factory.compressed_rle(np.ones((image['height'],
                                                image['width'] - 1),
                                               np.uint8))
        small['size'] = [image['height'], image['width']]
        data['annotations'][0] = dict(first, image_id=image['id'],
                                      segmentation=small)
        words = ['compressed RLE counts do not cover']
    elif case == 'box only':
        first['segmentation'] = []
        words = ['a box only']
    elif case == 'two-point polygon':
        first['segmentation'] = [[1, 1, 5, 5]]
        words = ['fewer than 3']
    elif case == 'odd polygon':
        first['segmentation'] = [[1, 1, 5, 5, 7]]
        words = ['list of x, y numbers']
    elif case == 'file listed twice':
        data['images'][1]['file_name'] = image['file_name']
        words = ['listed twice']
    elif case == 'escaping name':
        image['file_name'] = '../outside.png'
        words = ['not a path inside']
    elif case == 'category twice':
        data['categories'].append({'id': 99, 'name': data['categories'][0][
            'name']})
        words = ['two categories are named']
    elif case in ('val categories differ', 'image in train and val'):
        other = json.loads(json.dumps(data))
        if case == 'val categories differ':
            other['categories'][0]['name'] = 'renamed'
            words = ['list different categories']
        else:
            words = ['annotated twice', image['file_name']]
        with open(str(tmp_path / 'export' / 'val.json'), 'w') as f:
            json.dump(other, f)
        extra = ['--val', str(tmp_path / 'export' / 'val.json')]
    elif case == 'not json':
        with open(made['json'], 'w') as f:
            f.write('{"images": [')
        words = ['not valid JSON']
    elif case == 'train without annotations':
        del data['annotations']
        words = ['only a test split may come without labels']
    elif case == 'val fraction with val':
        other_json = factory.make_coco(str(tmp_path / 'export'), rng,
                                       n_images=1, name='val', first_id=90)
        extra = ['--val', other_json['json'], '--val-fraction', '0.5']
        words = ['val split already']
    elif case == 'val fraction too small':
        extra = ['--val-fraction', '0.1']
        words = ['leaves 0 for validation']
    if case != 'not json':
        with open(made['json'], 'w', encoding='utf-8') as f:
            json.dump(data, f)
    return (['coco', '--train', made['json'], '--out',
             str(tmp_path / 'out')] + extra, words)


COCO_REFUSALS = ('unknown category', 'unknown image', 'missing image',
                 'another size', 'polygon outside', 'rle of another size',
                 'rle counts', 'compressed rle counts', 'box only',
                 'two-point polygon', 'odd polygon', 'file listed twice',
                 'escaping name', 'category twice', 'val categories differ',
                 'image in train and val', 'not json',
                 'train without annotations', 'val fraction with val',
                 'val fraction too small')


@pytest.mark.parametrize('case', COCO_REFUSALS)
def test_coco_refusals(case, tmp_path, capsys):
    argv, words = _coco_case(tmp_path, case)
    refused(argv, capsys, *words)


def test_coco_test_split_without_annotations(tmp_path, capsys):
    rng = np.random.RandomState(4)
    train = factory.make_coco(str(tmp_path / 'export'), rng, n_images=3)
    test = factory.make_coco(str(tmp_path / 'export'), rng, n_images=2,
                             name='test', first_id=80)
    del test['data']['annotations']
    with open(test['json'], 'w', encoding='utf-8') as f:
        json.dump(test['data'], f)
    out = str(tmp_path / 'out')
    code, _, err = run(['coco', '--train', train['json'], '--test',
                        test['json'], '--out', out, '--val-fraction', '0.4'],
                       capsys)
    assert code == 0, err
    with open(os.path.join(out, 'dataset.json')) as f:
        desc = json.load(f)
    assert desc['test'] == {'images': 'images/test'}
    ds = registry.lookup(os.path.join(out, 'dataset.json')).get('test')
    assert len(ds) == 2 and not ds.has_labels


def test_compressed_total_reads_as_pycocotools(tmp_path):
    """The check of compressed RLE strings sums what pycocotools decodes,
    for random masks of random sizes."""
    from pycocotools import mask as mask_utils
    rng = np.random.RandomState(0)
    for _ in range(50):
        h, w = rng.randint(1, 300, 2)
        mask = (rng.rand(h, w) < rng.rand()).astype(np.uint8)
        rle = mask_utils.encode(np.asfortranarray(mask))
        counts = rle['counts'].decode('ascii')
        assert coco._compressed_total(counts) == h * w
        assert mask_utils.decode(rle).sum() == mask.sum()
    assert coco._compressed_total('') == 0


# -- labelme ----------------------------------------------------------------

def labelme_shape_to_mask(size, shape):
    """The pixels of a labelme shape as labelme's ``shape_to_mask`` (and
    ``shapes_to_label`` for masks) draws them; rectangles by their two
    corners in either order."""
    width, height = size
    points = [tuple(p) for p in shape['points']]
    kind = shape.get('shape_type') or 'polygon'
    if kind == 'mask':
        mask = np.zeros((height, width), dtype=bool)
        (x1, y1), (x2, y2) = np.asarray(points).astype(int)
        data = base64.b64decode(shape['mask'])
        mask[y1:y2 + 1, x1:x2 + 1] = np.asarray(
            Image.open(io.BytesIO(data))).astype(bool)
        return mask
    canvas = Image.fromarray(np.zeros((height, width), dtype=np.uint8))
    draw = ImageDraw.Draw(canvas)
    if kind == 'circle':
        (cx, cy), (px, py) = points
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
    elif kind == 'rectangle':
        xs, ys = sorted(p[0] for p in points), sorted(p[1] for p in points)
        draw.rectangle([(xs[0], ys[0]), (xs[1], ys[1])], outline=1, fill=1)
    else:
        draw.polygon(xy=points, outline=1, fill=1)
    return np.array(canvas, dtype=bool)


def labelme_expected(made, classes):
    size = made['size']
    label = np.zeros((size[1], size[0]), dtype=np.int64)
    for shape in made['shapes']:
        if shape['shape_type'] in factory.LABELME_SKIPPED:
            continue
        name = shape['label']
        value = (255 if name == '__ignore__' else 0
                 if name in ('_background_', 'background')
                 else classes.index(name))
        label[labelme_shape_to_mask(size, shape)] = value
    return label


def _labelme_out(made, folder, out, split):
    rel = os.path.relpath(made['json'], folder)[:-len('.json')]
    return (os.path.join(out, 'labels', split, rel + '.png'),
            os.path.join(out, 'images', split, rel))


@pytest.mark.parametrize('seed', SEEDS)
def test_labelme_files_drawn_as_labelme_draws(seed, tmp_path, capsys):
    rng = np.random.RandomState(seed)
    labels = ['zebra', factory.UNICODE_NAMES[0], 'apple', '__ignore__',
              '_background_']
    train = factory.make_labelme(str(tmp_path / 'train'), rng, n_files=5,
                                 labels=labels)
    val = factory.make_labelme(str(tmp_path / 'val'), rng, n_files=2,
                               labels=labels, images_beside=True)
    out = str(tmp_path / 'out')
    code, text, err = run(['labelme', '--train', str(tmp_path / 'train'),
                           '--val', str(tmp_path / 'val'), '--out', out],
                          capsys)
    assert code == 0, err
    # Sorted by code point: 'café' before 'zebra'.
    classes = ['background', 'apple', factory.UNICODE_NAMES[0], 'zebra']
    assert 'labelme export: 4 classes ({})'.format(', '.join(classes)) \
        in text
    skipped = {}
    for made in train + val:
        for shape in made['shapes']:
            if shape['shape_type'] in factory.LABELME_SKIPPED:
                skipped[shape['shape_type']] = skipped.get(
                    shape['shape_type'], 0) + 1
    for kind, count in skipped.items():
        assert '{} {} shape(s) skipped'.format(count, kind) in text
    spec = registry.lookup(os.path.join(out, 'dataset.json'))
    assert spec.label_names == tuple(classes)
    for split, files in (('train', train), ('val', val)):
        ds = spec.get(split)
        assert len(ds) == len(files)
        ds.check_labels()
        for made in files:
            label_path, image_stem = _labelme_out(
                made, str(tmp_path / split), out, split)
            np.testing.assert_array_equal(read_png(label_path),
                                          labelme_expected(made, classes))
            if made['image'] is None:
                data = base64.b64decode(made['data']['imageData'])
                ext = '.png' if data[:4] == b'\x89PNG' else '.jpg'
                with open(image_stem + ext, 'rb') as f:
                    assert f.read() == data
            else:
                assert filecmp.cmp(made['image'], image_stem + '.jpg',
                                   shallow=False)


def test_labelme_classes_file_fixes_names_and_order(tmp_path, capsys):
    rng = np.random.RandomState(5)
    files = factory.make_labelme(str(tmp_path / 'train'), rng, n_files=4,
                                 labels=['b', 'a'])
    classes_file = tmp_path / 'labels.txt'
    classes_file.write_text('__ignore__\n_background_\nb\nunused\na\n',
                            encoding='utf-8')
    out = str(tmp_path / 'out')
    code, text, err = run(['labelme', '--train', str(tmp_path / 'train'),
                           '--classes', str(classes_file), '--out', out,
                           '--val-fraction', '0.25', '--seed', '3'], capsys)
    assert code == 0, err
    assert 'classes without shapes (no pixels): unused\n' in text
    classes = ['_background_', 'b', 'unused', 'a']
    spec = registry.lookup(os.path.join(out, 'dataset.json'))
    assert spec.label_names == tuple(classes)
    assert len(spec.get('train')) == 3 and len(spec.get('val')) == 1
    for made in files:
        for split in ('train', 'val'):
            label_path, _ = _labelme_out(made, str(tmp_path / 'train'), out,
                                         split)
            if os.path.exists(label_path):
                np.testing.assert_array_equal(
                    read_png(label_path), labelme_expected(made, classes))
    # The same seed draws the same validation image; the seeds 0 to 5
    # do not all draw one.
    drawn = set()
    for seed in ('3', '0', '1', '2', '4', '5'):
        again = str(tmp_path / 'again{}'.format(seed))
        code, _, err = run(['labelme', '--train', str(tmp_path / 'train'),
                            '--classes', str(classes_file), '--out', again,
                            '--val-fraction', '0.25', '--seed', seed],
                           capsys)
        assert code == 0, err
        val = sorted(os.listdir(os.path.join(again, 'images', 'val')))
        if seed == '3':
            assert val == sorted(os.listdir(os.path.join(out, 'images',
                                                         'val')))
        drawn.add(tuple(val))
    assert len(drawn) > 1


def test_later_labelme_shapes_draw_over_earlier_ones(tmp_path, capsys):
    folder = tmp_path / 'train'
    folder.mkdir()
    rng = np.random.RandomState(0)
    factory.write_image(str(folder / 'x.jpg'), (30, 20), rng)
    shapes = [
        {'label': 'small', 'points': [[5, 5], [10, 10]],
         'shape_type': 'rectangle'},
        {'label': 'big', 'points': [[0, 0], [29, 0], [29, 19], [0, 19]],
         'shape_type': 'polygon'},
        {'label': 'small', 'points': [[25, 15], [20, 12]],
         'shape_type': 'rectangle'},
        {'label': 'hole', 'points': [[2, 2], [2, 3]],
         'shape_type': 'circle'},
        {'label': 'ignored', 'points': [[1, 1]], 'shape_type': 'point'},
    ]
    with open(str(folder / 'x.json'), 'w') as f:
        json.dump({'shapes': shapes, 'imagePath': 'x.jpg', 'imageData': None,
                   'imageHeight': 20, 'imageWidth': 30}, f)
    out = str(tmp_path / 'out')
    code, text, err = run(['labelme', '--train', str(folder), '--out', out],
                          capsys)
    assert code == 0, err
    assert '1 point shape(s) skipped' in text
    got = read_png(os.path.join(out, 'labels', 'train', 'x.png'))
    classes = ['background', 'big', 'hole', 'small']
    assert got[7, 7] == classes.index('big')  # drawn over by the big one
    assert got[13, 22] == classes.index('small')  # corners in any order
    assert got[2, 2] == classes.index('hole')
    assert (got == 0).sum() == 0


def _labelme_case(tmp_path, case):
    rng = np.random.RandomState(2)
    folder = str(tmp_path / 'train')
    files = factory.make_labelme(folder, rng, n_files=3, embedded=False,
                                 images_beside=True, labels=['a', 'b'])
    made = files[0]
    data = made['data']
    shape = {'label': 'a', 'points': [[1, 1], [5, 1], [3, 4]],
             'shape_type': 'polygon'}
    data['shapes'].append(shape)
    extra = []
    if case == 'label not in classes':
        (tmp_path / 'labels.txt').write_text('background\na\n')
        extra = ['--classes', str(tmp_path / 'labels.txt')]
        shape['label'] = 'b'
        words = ["label 'b' is not in the classes file"]
    elif case == 'two-point polygon':
        shape['points'] = shape['points'][:2]
        words = ['a polygon needs at least 3 points']
    elif case == 'three-point rectangle':
        shape['shape_type'] = 'rectangle'
        words = ['a rectangle needs 2 points, not 3']
    elif case == 'point outside':
        shape['points'][2] = [made['size'][0] + 5, 2]
        words = ['lies outside the {}x{} image'.format(*made['size'])]
    elif case == 'missing image':
        os.remove(made['image'])
        words = ['does not exist', os.path.basename(made['image'])]
    elif case == 'unknown shape type':
        shape['shape_type'] = 'bezier'
        words = ["unknown shape_type 'bezier'"]
    elif case == 'another size':
        data['imageHeight'] += 1
        words = ['the file is']
    elif case == 'not labelme':
        data = {'hello': 'world'}
        words = ['is not a labelme file']
    elif case == 'bad image data':
        data['imageData'] = 'not base64!'
        words = ['imageData is not base64']
    elif case == 'no label':
        shape['label'] = ''
        words = ['has no label']
    elif case == 'bad mask':
        shape.update(shape_type='mask', points=[[0, 0], [3, 3]],
                     mask=factory._png_base64(np.ones((2, 2), bool)))
        words = ['mask does not fill its box']
    elif case == 'empty classes file':
        (tmp_path / 'labels.txt').write_text('__ignore__\n\n')
        extra = ['--classes', str(tmp_path / 'labels.txt')]
        words = ['names no class']
    elif case == 'same image twice':
        files[1]['data'].update(
            imagePath=os.path.basename(made['image']), shapes=[],
            imageWidth=made['size'][0], imageHeight=made['size'][1])
        with open(files[1]['json'], 'w') as f:
            json.dump(files[1]['data'], f)
        words = ['annotated twice']
    elif case == 'empty folder':
        empty = tmp_path / 'empty'
        empty.mkdir()
        extra = ['--val', str(empty)]
        words = ['no labelme .json files']
    with open(made['json'], 'w', encoding='utf-8') as f:
        json.dump(data, f)
    return ['labelme', '--train', folder, '--out',
            str(tmp_path / 'out')] + extra, words


LABELME_REFUSALS = ('label not in classes', 'two-point polygon',
                    'three-point rectangle', 'point outside',
                    'missing image', 'unknown shape type', 'another size',
                    'not labelme', 'bad image data', 'no label', 'bad mask',
                    'empty classes file', 'same image twice', 'empty folder')


@pytest.mark.parametrize('case', LABELME_REFUSALS)
def test_labelme_refusals(case, tmp_path, capsys):
    argv, words = _labelme_case(tmp_path, case)
    refused(argv, capsys, *words)


# -- CVAT -------------------------------------------------------------------

@pytest.mark.parametrize('seed', SEEDS[:2])
def test_cvat_export(seed, tmp_path, capsys):
    rng = np.random.RandomState(seed)
    export_dir = str(tmp_path / 'export')
    made = factory.make_cvat(export_dir, rng, subsets={'Train': 4,
                                                       'validation': 2})
    out = str(tmp_path / 'out')
    code, text, err = run(['cvat', export_dir, '--out', out], capsys)
    assert code == 0, err
    spec = registry.lookup(os.path.join(out, 'dataset.json'))
    assert spec.label_names == tuple(made['names'])
    assert [tuple(c) for c in spec.label_colors] == made['colors']
    for subset, split in (('Train', 'train'), ('validation', 'val')):
        ds = spec.get(split)
        assert len(ds) == len(made['labels'][subset])
        for name, ids in made['labels'][subset].items():
            got = read_png(os.path.join(out, 'labels', split,
                                        *name.split('/')) + '.png')
            np.testing.assert_array_equal(got, ids)
            assert filecmp.cmp(
                os.path.join(export_dir, 'JPEGImages',
                             *name.split('/')) + '.jpg',
                os.path.join(out, 'images', split,
                             *name.split('/')) + '.jpg', shallow=False)


def test_cvat_export_without_images(tmp_path, capsys):
    rng = np.random.RandomState(7)
    export_dir = str(tmp_path / 'export')
    images = str(tmp_path / 'task_images')
    made = factory.make_cvat(export_dir, rng, with_images=False,
                             image_dir=images)
    out = str(tmp_path / 'out')
    refused(['cvat', export_dir, '--out', out], capsys, 'no image',
            'pass --images')
    code, text, err = run(['cvat', export_dir, '--images', images, '--out',
                           out, '--val-fraction', '0.2'], capsys)
    assert code == 0, err
    assert 'train: 4 images' in text and 'val: 1 images' in text
    spec = registry.lookup(os.path.join(out, 'dataset.json'))
    found = {}
    for split in ('train', 'val'):
        ds = spec.get(split)
        for i in range(len(ds)):
            rel = os.path.relpath(ds.label_paths[i], os.path.join(
                out, 'labels', split))[:-len('.png')].replace(os.sep, '/')
            found[rel] = ds[i][1]
    assert sorted(found) == sorted(made['labels']['default'])
    for name, ids in made['labels']['default'].items():
        np.testing.assert_array_equal(found[name], ids)


def _cvat_case(tmp_path, case):
    rng = np.random.RandomState(3)
    export_dir = str(tmp_path / 'export')
    made = factory.make_cvat(export_dir, rng)
    name = sorted(made['labels']['default'])[0]
    label_path = os.path.join(export_dir, 'SegmentationClass',
                              *name.split('/')) + '.png'
    words = []
    if case == 'colour of no label':
        rgb = np.asarray(Image.open(label_path)).copy()
        rgb[:2, :3] = (1, 2, 3)
        Image.fromarray(rgb).save(label_path)
        words = [label_path, '[1, 2, 3] (6 pixels)', 'labelmap.txt']
    elif case == 'no labelmap':
        os.remove(os.path.join(export_dir, 'labelmap.txt'))
        words = ['labelmap.txt does not exist']
    elif case == 'labelmap without colour':
        with open(os.path.join(export_dir, 'labelmap.txt'), 'a') as f:
            f.write('tree:::\n')
        words = ["'tree:::' is not"]
    elif case == 'labelmap colour twice':
        with open(os.path.join(export_dir, 'labelmap.txt'), 'a') as f:
            f.write('tree:255,0,0::\n')
        words = ['have the same colour [255, 0, 0]']
    elif case == 'unknown subset':
        os.rename(os.path.join(export_dir, 'ImageSets', 'Segmentation',
                               'default.txt'),
                  os.path.join(export_dir, 'ImageSets', 'Segmentation',
                               'holdout.txt'))
        words = ["subset 'holdout'"]
    elif case == 'missing label map':
        os.remove(label_path)
        words = ['label map', 'does not exist']
    elif case == 'label map of another size':
        Image.new('RGB', (3, 3)).save(label_path)
        words = ['is 3x3 but its image']
    elif case == 'grey label map':
        Image.new('I;16', Image.open(label_path).size).save(label_path)
        words = ['not a colour-coded label map']
    elif case == 'no subsets':
        shutil.rmtree(os.path.join(export_dir, 'ImageSets'))
        words = ['no ImageSets/Segmentation']
    elif case == 'val fraction without train':
        sets = os.path.join(export_dir, 'ImageSets', 'Segmentation')
        os.rename(os.path.join(sets, 'default.txt'),
                  os.path.join(sets, 'test.txt'))
        return (['cvat', export_dir, '--out', str(tmp_path / 'out'),
                 '--val-fraction', '0.5'], ['no train split'])
    return ['cvat', export_dir, '--out', str(tmp_path / 'out')], words


CVAT_REFUSALS = ('colour of no label', 'no labelmap',
                 'labelmap without colour', 'labelmap colour twice',
                 'unknown subset', 'missing label map',
                 'label map of another size', 'grey label map', 'no subsets',
                 'val fraction without train')


@pytest.mark.parametrize('case', CVAT_REFUSALS)
def test_cvat_refusals(case, tmp_path, capsys):
    argv, words = _cvat_case(tmp_path, case)
    refused(argv, capsys, *words)


# -- the output folder ------------------------------------------------------

@pytest.fixture
def small_coco(tmp_path):
    rng = np.random.RandomState(9)
    return factory.make_coco(str(tmp_path / 'export'), rng, n_images=3)


def test_existing_output_is_kept_unless_forced(small_coco, tmp_path, capsys):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'mine.txt').write_text('keep me')
    argv = ['coco', '--train', small_coco['json'], '--out', str(out)]
    code, _, err = run(argv, capsys)
    assert code == 2 and 'pass --force' in err and len(
        err.strip().splitlines()) == 1
    assert os.listdir(str(out)) == ['mine.txt']
    code, _, err = run(argv + ['--force'], capsys)
    assert code == 0, err
    assert sorted(os.listdir(str(out))) == ['dataset.json', 'images',
                                           'labels']
    # An empty folder is taken without --force.
    empty = tmp_path / 'empty'
    empty.mkdir()
    code, _, err = run(['coco', '--train', small_coco['json'], '--out',
                        str(empty)], capsys)
    assert code == 0, err


def test_output_must_not_hold_or_lie_in_an_input(small_coco, tmp_path,
                                                 capsys):
    export_dir = os.path.dirname(small_coco['json'])
    code, _, err = run(['coco', '--train', small_coco['json'], '--out',
                        export_dir, '--force'], capsys)
    assert code == 2 and 'holds the input' in err
    assert os.path.isfile(small_coco['json'])
    # Inside the images' folder is fine (nothing searches it).
    code, _, err = run(['coco', '--train', small_coco['json'], '--out',
                        os.path.join(small_coco['images'], 'out')], capsys)
    assert code == 0, err
    # Not inside a folder of labelme files, searched with subfolders.
    rng = np.random.RandomState(0)
    factory.make_labelme(str(tmp_path / 'lm'), rng, n_files=2)
    code, _, err = run(['labelme', '--train', str(tmp_path / 'lm'),
                        '--out', str(tmp_path / 'lm' / 'out')], capsys)
    assert code == 2 and 'lies in the input folder' in err
    assert not os.path.exists(str(tmp_path / 'lm' / 'out'))


def test_a_failure_while_writing_leaves_nothing(small_coco, tmp_path,
                                                capsys, monkeypatch):
    """A failure (or Ctrl-C) while the dataset is written removes the
    half-written folder and keeps an earlier dataset whole."""
    out = str(tmp_path / 'deeper' / 'out')
    argv = ['coco', '--train', small_coco['json'], '--out', out]
    calls = []
    real = coco._renderer

    def failing(size, shapes):
        render = real(size, shapes)

        def once():
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return render()
        return once
    monkeypatch.setattr(coco, '_renderer', failing)
    code, _, err = run(argv, capsys)
    assert code == 130 and len(calls) == 2
    assert not os.path.exists(str(tmp_path / 'deeper'))
    monkeypatch.undo()
    code, _, err = run(argv, capsys)
    assert code == 0, err
    before = sorted(os.listdir(os.path.join(out, 'labels', 'train')))
    calls.clear()
    monkeypatch.setattr(coco, '_renderer', failing)
    code, _, err = run(argv + ['--force'], capsys)
    assert code == 130
    assert sorted(os.listdir(os.path.join(out, 'labels', 'train'))) == before
    assert sorted(os.listdir(str(tmp_path / 'deeper'))) == ['out']


def test_a_killed_run_is_cleaned_up_by_the_next(small_coco, tmp_path,
                                                capsys):
    """A run killed while writing leaves its temporary folder (named
    after a process that is gone), which the next run removes."""
    out = str(tmp_path / 'out')
    child = subprocess.run([sys.executable, '-c', 'import os; '
                            'print(os.getpid())'], capture_output=True,
                           text=True)
    dead = int(child.stdout)
    stale = os.path.join(str(tmp_path), atomic._temp_prefix(out).replace(
        '.{}-'.format(os.getpid()), '.{}-'.format(dead)) + 'half')
    os.makedirs(os.path.join(stale, 'images'))
    code, _, err = run(['coco', '--train', small_coco['json'], '--out', out],
                       capsys)
    assert code == 0, err
    assert not os.path.exists(stale)
    assert sorted(os.listdir(str(tmp_path))) == ['export', 'out']


def test_images_are_linked_or_copied(small_coco, tmp_path, capsys):
    # Hard links where this file system has them, else copies.
    probe = tmp_path / 'probe'
    probe.write_text('x')
    try:
        os.link(str(probe), str(tmp_path / 'probe_link'))
        can_link = True
    except OSError:
        can_link = False
    for flag, linked in (([], can_link), (['--copy'], False)):
        out = str(tmp_path / ('out' + ''.join(flag)))
        code, _, err = run(['coco', '--train', small_coco['json'], '--out',
                            out] + flag, capsys)
        assert code == 0, err
        image = small_coco['data']['images'][0]['file_name']
        assert os.path.samefile(
            os.path.join(small_coco['images'], image),
            os.path.join(out, 'images', 'train', image)) == linked


def test_bad_flags_are_one_line(tmp_path, capsys):
    for argv, words in (
            (['coco', '--out', 'x'], 'required: --train'),
            (['coco', '--train', 'a.json', '--out', 'x', '--val-fraction',
              '1.5'], 'between 0 and 1'),
            (['sam', '--out', 'x'], 'invalid choice'),
            (['labelme', '--train', 'd', '--out', 'x', '--crowd', 'class'],
             'unrecognized arguments')):
        code, _, err = run(argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and words in lines[0], err
    refused(['coco', '--train', str(tmp_path / 'none.json'), '--out',
             str(tmp_path / 'out')], capsys, 'none.json does not exist')


# -- colour-coded label maps ("label_format": "rgb") --------------------------

RGB_COLORS = [[0, 0, 0], [255, 0, 0], [0, 128, 255], [128, 64, 128]]
RGB_IGNORE = [255, 255, 255]


def _rgb_dataset(root, rng, n_images=3, encoding='RGB', extra=None,
                 ignore=True):
    """Images and colour-coded label maps; returns (dataset.json, {stem:
    expected ids with -1 ignored})."""
    palette = np.asarray(RGB_COLORS + [RGB_IGNORE], dtype=np.uint8)
    expected = {}
    for k in range(n_images):
        size = (int(rng.randint(8, 50)), int(rng.randint(8, 50)))
        stem = '{}_{}'.format(factory.UNICODE_NAMES[k % 5], k)
        ids = rng.randint(-1 if ignore else 0, len(RGB_COLORS),
                          (size[1], size[0]))
        factory.write_image(os.path.join(root, 'images', stem + '.jpg'),
                            size, rng)
        path = os.path.join(root, 'labels', stem + '.png')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if encoding == 'RGB':
            Image.fromarray(palette[ids]).save(path)
        else:  # a palette PNG whose entries are the colours, shuffled
            order = rng.permutation(len(palette))
            image = Image.fromarray(np.argsort(order)[ids].astype(np.uint8),
                                    mode='P')
            image.putpalette(palette[order].ravel().tolist())
            image.save(path)
        expected[stem] = ids
    desc = {'classes': ['background', 'car', 'sky', 'road'],
            'colors': RGB_COLORS, 'label_format': 'rgb',
            'train': {'images': 'images', 'labels': 'labels'}}
    if ignore:
        desc['ignore_color'] = RGB_IGNORE
    desc.update(extra or {})
    path = os.path.join(root, 'dataset.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(desc, f, ensure_ascii=False)
    return path, expected


@pytest.mark.parametrize('encoding', ('RGB', 'P'))
@pytest.mark.parametrize('seed', SEEDS[:3])
def test_rgb_labels_are_read_through_the_colors(encoding, seed, tmp_path):
    rng = np.random.RandomState(seed)
    path, expected = _rgb_dataset(str(tmp_path), rng, encoding=encoding)
    ds = registry.lookup(path).get('train')
    loader.check_label_files(ds, range(len(ds)))
    counts = np.zeros(4, dtype=np.int64)
    for i in range(len(ds)):
        stem = os.path.splitext(os.path.basename(ds.img_paths[i]))[0]
        np.testing.assert_array_equal(ds[i][1], expected[stem])
        counts += np.bincount(expected[stem][expected[stem] >= 0],
                              minlength=4)
    np.testing.assert_array_equal(ds.check_labels()[0], counts)
    ignored = sum(int((e < 0).sum()) for e in expected.values())
    assert ds.label_counts()[:, -1].sum() == ignored


def test_rgb_label_checks_are_cached(tmp_path, monkeypatch):
    path, _ = _rgb_dataset(str(tmp_path), np.random.RandomState(0))
    first = registry.lookup(path).get('train').check_labels()

    def no_reading(path):
        raise AssertionError('read ' + path)
    monkeypatch.setattr(base, 'read_rgb_label', no_reading)
    np.testing.assert_array_equal(
        registry.lookup(path).get('train').check_labels(), first)


def test_a_colour_of_no_class_is_named_with_its_pixels(tmp_path):
    rng = np.random.RandomState(1)
    path, expected = _rgb_dataset(str(tmp_path), rng, ignore=False)
    ds = registry.lookup(path).get('train')
    label_path = ds.label_paths[1]
    rgb = np.asarray(Image.open(label_path)).copy()
    rgb[0, :3] = (7, 8, 9)
    rgb[1, :1] = (250, 1, 1)
    Image.fromarray(rgb).save(label_path)
    for check in (ds.check_labels, lambda: ds[1]):
        with pytest.raises(UserError) as e:
            check()
        text = str(e.value)
        assert text.startswith('label image {} holds the colours '
                               '[7, 8, 9] (3 pixels), [250, 1, 1] (1 pixels)'
                               .format(label_path)), text
        assert '\n' not in text and path in text


@pytest.mark.parametrize('case', ('transparent', '16-bit', 'grey and alpha',
                                  'float'))
def test_colour_files_that_cannot_be_read_as_colours(case, tmp_path):
    rng = np.random.RandomState(2)
    path, _ = _rgb_dataset(str(tmp_path), rng, n_images=1)
    ds = registry.lookup(path).get('train')
    label_path = ds.label_paths[0]
    rgb = np.asarray(Image.open(label_path).convert('RGB'))
    if case == 'transparent':
        alpha = np.full(rgb.shape[:2], 255, np.uint8)
        alpha[0, 0] = 0
        Image.fromarray(np.dstack([rgb, alpha])).save(label_path)
        words = 'has 1 pixels that are not opaque'
    elif case == '16-bit':
        import cv2
        cv2.imwrite(label_path, rgb[:, :, ::-1].astype(np.uint16) * 257)
        words = '16-bit colour channels'
    elif case == 'grey and alpha':
        Image.fromarray(np.dstack([rgb[:, :, 0], np.zeros_like(
            rgb[:, :, 0])])).save(label_path)
        words = 'not opaque'
    else:
        Image.fromarray(rgb[:, :, 0].astype(np.float32)).save(
            label_path.replace('.png', '.tif'))
        os.remove(label_path)
        with open(path) as f:
            desc = json.load(f)
        desc['train']['label_extension'] = '.tif'
        with open(path, 'w') as f:
            json.dump(desc, f)
        ds = registry.lookup(path).get('train')
        label_path = ds.label_paths[0]
        words = 'not a colour-coded label map'
    with pytest.raises(UserError) as e:
        ds.check_labels()
    assert label_path in str(e.value) and words in str(e.value)


def test_an_rgb_label_is_refused_without_label_format(tmp_path):
    """Without "label_format": "rgb", a colour label map is refused
    everywhere (read, header check, label check), with the way to read
    it."""
    rng = np.random.RandomState(3)
    path, _ = _rgb_dataset(str(tmp_path), rng, ignore=False)
    with open(path) as f:
        desc = json.load(f)
    for key in ('label_format', 'colors'):
        desc.pop(key)
    with open(path, 'w') as f:
        json.dump(desc, f)
    ds = registry.lookup(path).get('train')
    for check in (ds.check_labels, lambda: ds[0],
                  lambda: loader.check_label_files(ds, [0])):
        with pytest.raises(UserError) as e:
            check()
        assert 'is a RGB image, a colour picture' in str(e.value)
        assert '"label_format": "rgb"' in str(e.value)


RGB_DESCRIPTION_REFUSALS = {
    'no colors': ({'colors': None}, '"label_format": "rgb" needs "colors"'),
    'colour twice': ({'colors': [[0, 0, 0], [1, 1, 1], [1, 1, 1],
                                 [2, 2, 2]]},
                     "classes 'car' and 'sky' have the same colour"),
    'label_map': ({'label_map': {'0': 0}}, '"label_map" is for label maps'),
    'ignore_label': ({'ignore_label': 7}, '"ignore_label" is for label maps'),
    'ignore colour of a class': ({'ignore_color': [255, 0, 0]},
                                 'also the colour of class \'car\''),
    'bad ignore colour': ({'ignore_color': [1, 2]}, '"ignore_color" must be'),
    'unknown format': ({'label_format': 'RGB'}, '"label_format" must be one'),
    'ignore colour without rgb': ({'label_format': None},
                                  '"ignore_color" is for colour-coded'),
}


@pytest.mark.parametrize('case', sorted(RGB_DESCRIPTION_REFUSALS))
def test_rgb_description_refusals(case, tmp_path):
    edit, words = RGB_DESCRIPTION_REFUSALS[case]
    path, _ = _rgb_dataset(str(tmp_path), np.random.RandomState(0),
                           n_images=1)
    with open(path) as f:
        desc = json.load(f)
    for key, value in edit.items():
        if value is None:
            desc.pop(key)
        else:
            desc[key] = value
    with open(path, 'w') as f:
        json.dump(desc, f)
    with pytest.raises(UserError) as e:
        registry.lookup(path)
    assert words in str(e.value) and path in str(e.value)


def test_cvat_masks_read_directly_equal_the_conversion(tmp_path, capsys):
    """A CVAT export's colour-coded masks, described with "label_format":
    "rgb", read as the converted dataset's label PNGs."""
    rng = np.random.RandomState(8)
    export_dir = str(tmp_path / 'export')
    made = factory.make_cvat(export_dir, rng)
    out = str(tmp_path / 'out')
    assert run(['cvat', export_dir, '--out', out], capsys)[0] == 0
    direct = os.path.join(export_dir, 'direct.json')
    with open(direct, 'w', encoding='utf-8') as f:
        json.dump({'classes': made['names'],
                   'colors': [list(c) for c in made['colors']],
                   'label_format': 'rgb',
                   'train': {'images': 'JPEGImages',
                             'labels': 'SegmentationClass'}}, f,
                  ensure_ascii=False)
    a = registry.lookup(direct).get('train')
    b = registry.lookup(os.path.join(out, 'dataset.json')).get('train')
    assert len(a) == len(b) == len(made['labels']['default'])
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i][1], b[i][1])
        np.testing.assert_array_equal(a[i][0], b[i][0])


# -- preview ----------------------------------------------------------------

@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """A COCO export of 34 images (27 train, 7 val), one category never
    used, converted."""
    root = tmp_path_factory.mktemp('converted')
    rng = np.random.RandomState(11)
    made = factory.make_coco(str(root / 'export'), rng, n_images=34,
                             categories=[(1, 'cat'), (2, 'dog'),
                                         (3, 'unicorn')])
    data = made['data']
    data['annotations'] = [a for a in data['annotations']
                           if a['category_id'] != 3]
    with open(made['json'], 'w', encoding='utf-8') as f:
        json.dump(data, f, ensure_ascii=False)
    out = str(root / 'out')
    text = io.StringIO()
    prepare.prepare(prepare.PrepareOptions(
        format='coco', train=made['json'], out=out, val_fraction=0.2,
        show_progress=False), out=text)
    assert 'classes without annotations (no pixels): unicorn\n' in \
        text.getvalue()
    return os.path.join(out, 'dataset.json')


def _expected_frequencies(ds):
    """(n_class + 1,) pixels and images of each class, then ignored, from
    the label PNGs read by Pillow."""
    pixels = np.zeros(ds.n_class + 1, dtype=np.int64)
    images = np.zeros(ds.n_class + 1, dtype=np.int64)
    for path in ds.label_paths:
        raw = read_png(path)
        count = np.bincount(np.where(raw == 255, ds.n_class, raw).ravel(),
                            minlength=ds.n_class + 1)
        pixels += count
        images += count > 0
    return pixels, images


@pytest.mark.parametrize('sheet_images, pages', ((0, 2), (5, 1)))
def test_preview_writes_the_sheet_and_the_frequencies(
        converted, sheet_images, pages, tmp_path, capsys):
    out = str(tmp_path / 'preview')
    code, text, err = run(['preview', '--dataset', converted, '--out', out,
                           '--sheet-images', str(sheet_images)], capsys)
    assert code == 0, err
    ds = registry.lookup(converted).get('train')
    assert len(ds) == 27
    names = (['contact_sheet.png'] if pages == 1 else
             ['contact_sheet_1.png', 'contact_sheet_2.png'])
    assert sorted(os.listdir(out)) == sorted(
        names + ['class_frequencies.csv', 'class_frequencies.png'])
    for name in names + ['class_frequencies.png']:
        with Image.open(os.path.join(out, name)) as image:
            assert image.format == 'PNG' and min(image.size) > 100
    pixels, images = _expected_frequencies(ds)
    with open(os.path.join(out, 'class_frequencies.csv'),
              encoding='utf-8') as f:
        rows = f.read().splitlines()
    assert rows[0] == 'class,name,pixels,percent,images'
    total = pixels.sum()
    for c, name in enumerate(['background', 'cat', 'dog', 'unicorn',
                              '(ignored)']):
        index = c if c < 4 else -1
        assert rows[c + 1] == '{},{},{},{:.4f},{}'.format(
            index, name, pixels[c], 100.0 * pixels[c] / total, images[c])
    assert 'absent from split train: unicorn' in text
    assert 'split train of {}: 27 images'.format(converted) in text


def test_preview_of_the_val_split_and_a_replaced_preview(converted,
                                                         tmp_path, capsys):
    out = str(tmp_path / 'preview')
    code, _, err = run(['preview', '--dataset', converted, '--out', out,
                        '--sheet-images', '0'], capsys)
    assert code == 0, err
    assert 'contact_sheet_2.png' in os.listdir(out)
    # A new preview replaces the old one whole: no second page left.
    code, text, err = run(['preview', '--dataset', converted, '--split',
                           'val', '--out', out], capsys)
    assert code == 0, err
    assert 'split val of' in text and '7 images' in text
    assert sorted(os.listdir(out)) == ['class_frequencies.csv',
                                       'class_frequencies.png',
                                       'contact_sheet.png']
    # Other files in the folder: refused.
    with open(os.path.join(out, 'notes.txt'), 'w') as f:
        f.write('mine')
    code, _, err = run(['preview', '--dataset', converted, '--out', out],
                       capsys)
    assert code == 2 and 'holds other files (notes.txt)' in err
    assert len(os.listdir(out)) == 4


def test_preview_stops_at_a_bad_label_and_writes_nothing(tmp_path, capsys):
    rng = np.random.RandomState(12)
    path, _ = _rgb_dataset(str(tmp_path / 'data'), rng, n_images=20,
                           ignore=False)
    ds = registry.lookup(path).get('train')
    label_path = ds.label_paths[17]
    rgb = np.asarray(Image.open(label_path)).copy()
    rgb[:2, :2] = (3, 3, 3)
    Image.fromarray(rgb).save(label_path)
    out = str(tmp_path / 'preview')
    code, text, err = run(['preview', '--dataset', path, '--out', out],
                          capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert label_path in lines[0] and '[3, 3, 3] (4 pixels)' in lines[0]
    assert not os.path.exists(out)
    assert os.listdir(str(tmp_path)) == ['data']


def test_preview_of_a_split_without_labels(tmp_path, capsys):
    rng = np.random.RandomState(13)
    path, _ = _rgb_dataset(str(tmp_path / 'data'), rng, n_images=2,
                           extra={'test': {'images': 'images'}})
    out = str(tmp_path / 'preview')
    code, _, err = run(['preview', '--dataset', path, '--split', 'test',
                        '--out', out], capsys)
    assert code == 2 and 'has no labels' in err
    code, _, err = run(['preview', '--dataset', path, '--split', 'nope',
                        '--out', out], capsys)
    assert code == 2 and "no 'nope' split" in err
    assert not os.path.exists(out)


# -- from an export to a trained model --------------------------------------

def _env():
    return dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')


def _script(argv, timeout=600):
    result = subprocess.run([sys.executable] + argv, cwd=ROOT, env=_env(),
                            timeout=timeout, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.skipif(not os.path.isfile(MPIEXEC),
                    reason='no mpiexec next to {} (pip install mpich)'.format(
                        sys.executable))
def test_from_a_coco_export_to_training_evaluation_and_the_demo(tmp_path):
    """The whole flow of docs/own-data.md with the scripts: a COCO
    export, prepare_dataset.py coco, preview, 2-process training, the
    evaluation's table and the demo's colours, all with the export's
    class names."""
    rng = np.random.RandomState(21)
    made = factory.make_coco(str(tmp_path / 'export'), rng, n_images=6,
                             categories=[(4, 'cat'), (9, 'dog')],
                             sizes=(56, 90))
    data = str(tmp_path / 'pets')
    _script([os.path.join(ROOT, 'prepare_dataset.py'), 'coco', '--train',
             made['json'], '--out', data, '--val-fraction', '0.34',
             '--no-progress'])
    dataset = os.path.join(data, 'dataset.json')
    shown = _script([os.path.join(ROOT, 'prepare_dataset.py'), 'preview',
                     '--dataset', dataset, '--out', str(tmp_path / 'look'),
                     '--no-progress'])
    assert 'cat' in shown.stdout and 'dog' in shown.stdout
    out = str(tmp_path / 'result')
    cache = str(tmp_path / 'chainer_dataset')
    result = subprocess.run(
        [MPIEXEC, '-n', '2', sys.executable,
         os.path.join(ROOT, 'train_multi.py'), '--dataset', dataset,
         '--model', 'pspnet_resnet50', '--out', out, '--crop-size', '64',
         '--batchsize', '1', '--iteration', '3', '--pretrained-model',
         'none', '--log-interval', '1', '--snapshot-interval', '100',
         '--val-interval', '0', '--loaderjob', '0', '--no-progress',
         '--class-weight', 'median'],
        cwd=ROOT, env=dict(_env(), CHAINER_DATASET_ROOT=cache), timeout=900,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True)
    assert result.returncode == 0, result.stdout + result.stderr
    model = os.path.join(out, 'model_final.npz')
    with open(os.path.join(out, 'log')) as f:
        assert all(np.isfinite(e['main/loss']) for e in json.load(f))
    report = str(tmp_path / 'report')
    evaluation = _script([os.path.join(ROOT,
                                       'eval_semantic_segmentation.py'),
                          '--dataset', dataset, '--model', 'pspnet_resnet50',
                          '--pretrained-model', model, '--input-size', '64',
                          '--report', report])
    rows = [line.split(':')[0].strip()
            for line in evaluation.stdout.splitlines() if ':' in line]
    assert rows[:3] == ['background', 'cat', 'dog']
    # The report names the export's classes and lists every val image.
    with open(os.path.join(report, 'confusion_matrix.csv')) as f:
        header = next(csv.reader(f))
    assert header[1:] == ['background', 'cat', 'dog']
    with open(os.path.join(report, 'per_image.csv')) as f:
        per_image = list(csv.DictReader(f))
    assert len(per_image) == len(registry.lookup(dataset).get('val'))
    assert os.path.isfile(os.path.join(report, 'index.html'))
    image = registry.lookup(dataset).get('val').img_paths[0]
    prefix = str(tmp_path / 'seg')
    _script([os.path.join(ROOT, 'demo.py'), '--dataset', dataset, '--model',
             'pspnet_resnet50', '--pretrained-model', model, '--input-size',
             '64', '--output', prefix, image])
    with open(dataset) as f:
        colors = np.asarray(json.load(f)['colors'])
    painted = np.asarray(Image.open(prefix + '_color.png').convert('RGB'))
    label = np.asarray(Image.open(prefix + '_label.png'))
    np.testing.assert_array_equal(painted, colors[label])


@pytest.mark.parametrize('n_class', (255, 256, 300))
def test_beyond_255_classes_labels_are_16_bit(n_class, tmp_path, capsys):
    """Up to 255 classes: 8-bit label PNGs, 255 ignored; beyond: 16-bit,
    65535 ignored."""
    folder = tmp_path / 'train'
    folder.mkdir()
    rng = np.random.RandomState(n_class)
    factory.write_image(str(folder / 'x.png'), (20, 10), rng)
    names = ['background'] + ['c{}'.format(i) for i in range(1, n_class)]
    (tmp_path / 'labels.txt').write_text('\n'.join(names))
    shapes = [{'label': names[-1], 'points': [[0, 0], [9, 9]],
               'shape_type': 'rectangle'},
              {'label': '__ignore__', 'points': [[12, 0], [15, 5]],
               'shape_type': 'rectangle'}]
    with open(str(folder / 'x.json'), 'w') as f:
        json.dump({'shapes': shapes, 'imagePath': 'x.png',
                   'imageData': None}, f)
    out = str(tmp_path / 'out')
    code, _, err = run(['labelme', '--train', str(folder), '--classes',
                        str(tmp_path / 'labels.txt'), '--out', out], capsys)
    assert code == 0, err
    ignore = output.ignore_label(n_class)
    assert ignore == (255 if n_class <= 255 else 65535)
    with open(os.path.join(out, 'dataset.json')) as f:
        assert json.load(f)['ignore_label'] == ignore
    path = os.path.join(out, 'labels', 'train', 'x.png')
    raw = read_png(path)
    assert raw[5, 5] == n_class - 1 and raw[2, 13] == ignore
    assert raw[0, 19] == 0
    assert Image.open(path).mode == ('L' if n_class <= 255 else 'I;16')
    label = registry.lookup(os.path.join(out, 'dataset.json')).get(
        'train')[0][1]
    assert label[5, 5] == n_class - 1 and label[2, 13] == -1


@pytest.mark.parametrize('orientation', (6, 8))
def test_photos_turned_by_their_exif_orientation(orientation, tmp_path,
                                                 capsys):
    """Shapes drawn on a photo as displayed (its EXIF orientation applied,
    as labelme and most tools show it) become a label map of the
    displayed size; an export that gives the stored size is refused in
    words that say so."""
    from tests.helpers import dataset_factory
    rng = np.random.RandomState(orientation)
    displayed = rng.randint(0, 256, (30, 50, 3)).astype(np.uint8)  # 50x30
    dataset_factory.write_oriented(str(tmp_path / 'export' / 'photo.jpg'),
                                   displayed, orientation)
    image = {'id': 1, 'file_name': 'photo.jpg', 'width': 50, 'height': 30}
    ann = {'id': 1, 'image_id': 1, 'category_id': 1, 'iscrowd': 0,
           'segmentation': _square(40, 2, 48, 28)}
    path = _coco_file(str(tmp_path / 'export' / 'train.json'), [image],
                      [ann])
    out = str(tmp_path / 'out')
    code, _, err = run(['coco', '--train', path, '--out', out], capsys)
    assert code == 0, err
    got = read_png(os.path.join(out, 'labels', 'train', 'photo.png'))
    assert got.shape == (30, 50) and got[15, 44] == 1 and got[15, 5] == 0
    ds = registry.lookup(os.path.join(out, 'dataset.json')).get('train')
    img, label = ds[0]
    assert img.shape == (3, 30, 50) and label[15, 44] == 1
    # The stored size (30x50): the shapes were drawn on the picture
    # without its orientation.
    image.update(width=30, height=50)
    ann['segmentation'] = _square(2, 2, 28, 10)
    _coco_file(path, [image], [ann])
    refused(['coco', '--train', path, '--out', out + '2'], capsys,
            'as 30x50, its stored size', 'EXIF orientation {}'.format(
                orientation))
