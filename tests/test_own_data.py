"""A user's dataset described by a JSON file: training under mpiexec -n 2,
evaluation and the demo on both layouts (folders with a label suffix,
list file), class weights, and one-line errors for bad descriptions and
bad labels."""

import json
import os
import subprocess
import sys

import chainer
import chainer.functions as F
import numpy as np
import pytest
from PIL import Image

import demo
from pspnet.apps import demo as demo_app
import eval_semantic_segmentation
import train_multi
from pspnet import PSPNetResNet50
from pspnet import flags
from pspnet.datasets import base
from pspnet.datasets import description
from pspnet.datasets import registry
from pspnet.errors import UserError
from pspnet.training import class_weights
from pspnet.training.train_chain import TrainChain
from tests.helpers import dataset_factory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
N_ITER = 4
CROP = 64

LAYOUTS = {
    # Folders, label suffix, palette PNGs, the user's colours, 4 classes.
    'folders': dict(layout='folders', classes=('sky', 'tree', 'road',
                                               'car'),
                    colors=[[10, 20, 30], [40, 200, 60], [128, 64, 128],
                            [0, 0, 142]], palette=True, n_images=2),
    # A list file, 8-bit grey labels storing other ids (label_map), an
    # ignore value of 0, generated colours, 3 classes.
    'list': dict(layout='list', classes=('bg', 'cell', 'nucleus'),
                 palette=False, label_map={0: 10, 1: 20, 2: 30},
                 ignore_label=0, label_suffix='', n_images=2),
}


# Label-check caches go to a temporary dataset root.
pytestmark = pytest.mark.usefixtures('chainer_dataset_root')


def _env():
    return dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')


def _run(command, timeout=600):
    return subprocess.run(command, cwd=ROOT, env=_env(), timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


@pytest.fixture(scope='module', params=sorted(LAYOUTS))
def trained(request, tmp_path_factory):
    """A dataset of each layout and a 2-process training run on it, with
    median-frequency weights (folders) or a weight file (list)."""
    layout = request.param
    root = tmp_path_factory.mktemp(layout)
    cache = str(tmp_path_factory.getbasetemp() / 'chainer_dataset')
    path = dataset_factory.make_own_dataset(str(root / 'data'),
                                            **LAYOUTS[layout])
    n_class = len(LAYOUTS[layout]['classes'])
    if layout == 'folders':
        weight = 'median'
    else:
        weight = str(root / 'weights.txt')
        with open(weight, 'w') as f:
            f.write('# one per class\n' + ''.join(
                '{}\n'.format(0.5 + i) for i in range(n_class)))
    out = str(root / 'out')
    result = subprocess.run(
        [MPIEXEC, '-n', '2', sys.executable,
         os.path.join(ROOT, 'train_multi.py'), '--dataset', path,
         '--model', 'pspnet_resnet50', '--out', out, '--crop-size',
         str(CROP), '--batchsize', '1', '--iteration', str(N_ITER),
         '--pretrained-model', 'none', '--log-interval', '1',
         '--snapshot-interval', '100', '--val-interval', '0',
         '--loaderjob', '0', '--no-progress', '--class-weight', weight],
        cwd=ROOT, env=dict(_env(), CHAINER_DATASET_ROOT=cache), timeout=600,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return {'layout': layout, 'path': path, 'out': out, 'result': result,
            'n_class': n_class, 'model': os.path.join(out, 'model_final.npz')}


@pytest.mark.skipif(not os.path.isfile(MPIEXEC),
                    reason='no mpiexec next to {} (pip install mpich)'.format(
                        sys.executable))
def test_training_on_the_description(trained):
    out, n_class = trained['out'], trained['n_class']
    with open(os.path.join(out, 'config.json')) as f:
        config = json.load(f)
    assert config['n_class'] == n_class and config['n_processes'] == 2
    assert config['dataset'] == trained['path']
    weights = config['class_weights']
    assert len(weights) == n_class and all(w > 0 for w in weights)
    if trained['layout'] == 'list':
        assert weights == [0.5 + i for i in range(n_class)]
    with open(os.path.join(out, 'log')) as f:
        log = json.load(f)
    assert len(log) == N_ITER
    assert all(np.isfinite(e['main/loss']) for e in log)
    with open(os.path.join(out, 'validation.json')) as f:
        figures = json.load(f)
    assert len(figures['iou']) == n_class
    for name in LAYOUTS[trained['layout']]['classes']:
        assert name in trained['result'].stdout
    model = PSPNetResNet50(n_class=n_class, input_size=CROP)
    chainer.serializers.load_npz(trained['model'], model)


def test_evaluation_names_the_users_classes(trained, capsys):
    eval_semantic_segmentation.main([
        '--dataset', trained['path'], '--model', 'pspnet_resnet50',
        '--pretrained-model', trained['model'], '--input-size', str(CROP)])
    table = capsys.readouterr().out
    names = LAYOUTS[trained['layout']]['classes']
    rows = [line.split(':')[0].strip() for line in table.splitlines()
            if ':' in line]
    assert rows[:len(names)] == list(names)
    assert 'mean IoU' in table


def test_demo_paints_the_users_colours(trained, tmp_path, monkeypatch):
    spec = registry.lookup(trained['path'])
    image = spec.get('val').img_paths[0]
    legends = []
    real = demo_app.visualizations.segmentation_figure

    def recording(img, label, names, colors, **kwargs):
        legends.append((names, np.asarray(colors)))
        return real(img, label, names, colors, **kwargs)
    monkeypatch.setattr(demo_app.visualizations, 'segmentation_figure',
                        recording)
    prefix = str(tmp_path / 'seg')
    demo.main(['--model', 'pspnet_resnet50', '--dataset', trained['path'],
               '--pretrained-model', trained['model'], '--input-size',
               str(CROP), '--output', prefix, image])
    names, colors = legends[0]
    assert names == LAYOUTS[trained['layout']]['classes']
    expected = np.asarray(spec.label_colors)
    if 'colors' in LAYOUTS[trained['layout']]:
        assert expected.tolist() == LAYOUTS[trained['layout']]['colors']
    np.testing.assert_array_equal(colors, expected)
    painted = np.asarray(Image.open(prefix + '_color.png').convert('RGB'))
    label = np.asarray(Image.open(prefix + '_label.png'))
    np.testing.assert_array_equal(painted, expected[label])


def test_class_count_of_the_weights_names_the_dataset_file(
        trained, tmp_path, capsys):
    other = str(tmp_path / 'other.json')
    with open(trained['path']) as f:
        desc = json.load(f)
    desc['classes'] = desc['classes'] + ['extra']
    desc.pop('colors', None)
    for split in ('train', 'val'):
        for key in ('images', 'labels', 'list'):
            if key in desc[split]:
                desc[split][key] = os.path.join(
                    os.path.dirname(trained['path']), desc[split][key])
    with open(other, 'w') as f:
        json.dump(desc, f)
    with pytest.raises(SystemExit) as e:
        eval_semantic_segmentation.main([
            '--dataset', other, '--model', 'pspnet_resnet50',
            '--pretrained-model', trained['model']])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'dataset file {}'.format(other) in err[0]
    assert '{} classes'.format(trained['n_class']) in err[0]


# -- the description file ---------------------------------------------------

@pytest.fixture(scope='module')
def good(tmp_path_factory):
    """A valid folder-layout dataset to break in many ways."""
    root = str(tmp_path_factory.mktemp('good'))
    path = dataset_factory.make_own_dataset(
        root, classes=('a', 'b', 'c'), n_images=2, label_suffix='_mask')
    with open(path) as f:
        return root, json.load(f)


def _write(root, name, desc):
    path = os.path.join(root, name)
    with open(path, 'w') as f:
        if isinstance(desc, str):
            f.write(desc)
        else:
            json.dump(desc, f)
    return path


def _edit(desc, **changes):
    desc = json.loads(json.dumps(desc))
    for key, value in changes.items():
        if value is None:
            desc.pop(key, None)
        else:
            desc[key] = value
    return desc


BAD_DESCRIPTIONS = {
    'not json': ('{"classes": [', 'not valid JSON'),
    'a list': ('[1, 2]', 'must be a JSON object'),
    'unknown key': (dict(clases=['a']), "unknown key 'clases'"),
    'no classes': (dict(classes=None), 'no "classes"'),
    'empty classes': (dict(classes=[]), 'non-empty list'),
    'class not a string': (dict(classes=['a', 3, 'c']), 'non-empty list'),
    'class twice': (dict(classes=['a', 'b', 'a']), "'a' is listed twice"),
    'colour count': (dict(colors=[[0, 0, 0]]), 'one [R, G, B] per class'),
    'colour value': (dict(colors=[[0, 0, 0], [0, 0, 256], [1, 2, 3]]),
                     'integers in [0, 255]'),
    'ignore type': (dict(ignore_label='255'), "'ignore_label' must be"),
    'ignore is a class': (dict(ignore_label=1), 'also the index of class'),
    'label_map key': (dict(label_map={'x': 0}), 'is not a stored value'),
    'label_map value': (dict(label_map={'3': 7}), 'no class index'),
    'label_map ignore': (dict(label_map={'255': 0}),
                         'maps the ignore_label'),
    'input size': (dict(input_size=10), "'input_size' must be"),
    'iterations': (dict(iterations=0), "'iterations' must be"),
    'no split': (dict(train=None, val=None), 'no split'),
    'split key': (dict(val={'images': 'images/val', 'labels': 'labels/val',
                            'suffix': '_mask'}), "unknown key 'suffix'"),
    'split not object': (dict(val='images/val'), 'must be a JSON object'),
    'no labels folder': (dict(val={'images': 'images/val'}),
                         "has no 'labels' folder"),
    'missing folder': (dict(val={'images': 'images/nope',
                                 'labels': 'labels/val'}),
                       'images folder'),
    'missing list': (dict(val={'list': 'nope.txt'}),
                     'list file'),
    'wrong suffix': (dict(val={'images': 'images/val',
                               'labels': 'labels/val',
                               'label_suffix': '_gt'}), 'has no label'),
    'extensions type': (dict(val={'images': 'images/val',
                                  'labels': 'labels/val',
                                  'image_extensions': '.jpg'}),
                        '"image_extensions"'),
}


@pytest.mark.parametrize('case', sorted(BAD_DESCRIPTIONS))
def test_bad_description_is_one_line(good, case, tmp_path):
    root, desc = good
    change, message = BAD_DESCRIPTIONS[case]
    bad = change if isinstance(change, str) else _edit(desc, **change)
    path = _write(root, case.replace(' ', '_') + '.json', bad)
    with pytest.raises(UserError) as e:
        spec = registry.lookup(path)
        spec.get('train')
        spec.get('val')
    text = str(e.value)
    assert message in text and '\n' not in text, text
    assert path in text or case == 'missing list', text


def _dumps_with_repeat(obj, where, key, value, first):
    """JSON text of ``obj`` in which the object at path ``where`` (a list
    of keys from the top) gives ``key`` once more, with ``value``, before
    (``first``) or after its other keys (json.dumps cannot repeat keys)."""
    if isinstance(obj, dict):
        pairs = [json.dumps(k) + ': ' + _dumps_with_repeat(
            v, where[1:] if where and where[0] == k else None, key, value,
            first) for k, v in obj.items()]
        if where == []:
            extra = json.dumps(key) + ': ' + json.dumps(value)
            pairs = [extra] + pairs if first else pairs + [extra]
        return '{' + ', '.join(pairs) + '}'
    return json.dumps(obj)


def _objects(obj, where=()):
    """The paths of the JSON objects in ``obj`` (a list of keys each)."""
    if isinstance(obj, dict):
        yield list(where)
        for k, v in obj.items():
            for found in _objects(v, where + (k,)):
                yield found


@pytest.mark.parametrize('seed', range(12))
def test_a_key_given_twice_anywhere_is_refused(good, seed):
    """JSON keeps the last of two equal keys, so a repeated key (a class
    lost from label_map, a split's folder given twice...) is refused,
    naming the key and the object that repeats it; in any object of the
    file, with any value, first or last."""
    root, desc = good
    rng = np.random.RandomState(seed)
    desc = _edit(desc, label_map={'0': 0, '1': 1, '2': 2, '7': 1},
                 colors=[[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    places = list(_objects(desc))
    where = places[rng.randint(len(places))]
    target = desc
    for k in where:
        target = target[k]
    key = sorted(target)[rng.randint(len(target))]
    value = [None, 1, 'x', [2], {'a': 1}, target[key]][rng.randint(6)]
    path = _write(root, 'repeat{}.json'.format(seed), _dumps_with_repeat(
        desc, where, key, value, bool(rng.randint(2))))
    with pytest.raises(UserError) as e:
        registry.lookup(path)
    text = str(e.value)
    expected = 'key {} is given twice in {}'.format(
        json.dumps(key), '.'.join(where) or 'the file')
    assert expected in text and path in text and '\n' not in text, text


def test_a_repeated_key_deep_inside_is_named_by_its_path(good):
    root, desc = good
    desc = _edit(desc, label_map={'2': 2, '2 ': 1})
    text = json.dumps(desc).replace('"2 "', '"2"')
    path = _write(root, 'label_map_twice.json', text)
    with pytest.raises(UserError, match='key "2" is given twice in '
                       'label_map'):
        registry.lookup(path)
    # An object inside a list: its index is named.
    text = json.dumps(_edit(desc, label_map=None, colors=[
        [0, 0, 0], [1, 1, 1], {'r': 1}])).replace('{"r": 1}',
                                                  '{"r": 1, "r": 2}')
    path = _write(root, 'in_a_list.json', text)
    with pytest.raises(UserError, match=r'key "r" is given twice in '
                       r'colors\[2\]'):
        registry.lookup(path)


@pytest.mark.parametrize('keys', [('2', ' 2'), ('2', '2 '), (' 7', '7')])
def test_one_stored_value_under_two_keys_is_refused(good, keys):
    root, desc = good
    mapping = {'0': 0, '1': 1, keys[0]: 2, keys[1]: 1}
    path = _write(root, 'same_value.json', _edit(desc, label_map=mapping))
    with pytest.raises(UserError) as e:
        registry.lookup(path)
    assert 'label_map keys {!r} and {!r} are the same stored value'.format(
        *keys) in str(e.value)


def test_scripts_refuse_a_repeated_key_in_one_line(good, tmp_path):
    root, desc = good
    text = json.dumps(_edit(desc, label_map={'0': 0, '1': 1, '2': 2})
                      ).replace('"2": 2', '"2": 2, "2": 1')
    path = _write(root, 'twice.json', text)
    out = str(tmp_path / 'pred')
    result = _run_script([os.path.join(ROOT, 'eval_semantic_segmentation.py'),
                          '--dataset', path, '--model', 'pspnet_resnet50',
                          '--save-predictions', out])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert 'key "2" is given twice in label_map' in lines[0]
    assert not os.path.exists(out)


def _run_script(argv, timeout=300):
    return _run([sys.executable] + argv, timeout)


def test_scripts_refuse_a_bad_description_in_one_line(good, tmp_path):
    root, desc = good
    path = _write(root, 'typo.json', _edit(desc, colours=[]))
    weights = str(tmp_path / 'w.npz')
    for argv in (
            [os.path.join(ROOT, 'train_multi.py'), '--dataset', path,
             '--model', 'pspnet_resnet50'],
            [os.path.join(ROOT, 'eval_semantic_segmentation.py'),
             '--dataset', path, '--model', 'pspnet_resnet50'],
            [os.path.join(ROOT, 'demo.py'), '--dataset', path,
             '--pretrained-model', weights, 'x.jpg']):
        result = _run_script(argv)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert "unknown key 'colours'" in lines[0] and path in lines[0]


def test_unknown_name_and_missing_file():
    with pytest.raises(UserError, match='PATH.json'):
        registry.lookup('mnist')
    with pytest.raises(UserError, match='does not exist'):
        registry.lookup('/nonexistent/dataset.json')
    assert 'PATH.json' in flags.dataset_names()


def test_folder_pairing_errors(tmp_path):
    path = dataset_factory.make_own_dataset(str(tmp_path), n_images=2)
    # An image without a label.
    os.remove(os.path.join(str(tmp_path), 'labels', 'train',
                           'train_000_mask.png'))
    with pytest.raises(UserError, match='train_000.jpg has no label'):
        registry.lookup(path).get('train')
    # A label without an image.
    spec = registry.lookup(path)
    os.remove(os.path.join(str(tmp_path), 'images', 'val', 'val_001.jpg'))
    with pytest.raises(UserError, match='val_001_mask.png has no image'):
        spec.get('val')
    # Two images of one stem.
    img = os.path.join(str(tmp_path), 'images', 'val', 'val_000')
    Image.open(img + '.jpg').save(img + '.png')
    with pytest.raises(UserError, match='same stem'):
        spec.get('val')


def test_list_errors(tmp_path):
    path = dataset_factory.make_own_dataset(str(tmp_path), layout='list',
                                            n_images=2)
    spec = registry.lookup(path)
    assert len(spec.get('train')) == 2
    lists = os.path.join(str(tmp_path), 'lists')
    cases = {
        'one field': ('../images/val/val_000.jpg\n', '1 field(s)'),
        'no image': ('../images/val/nope.jpg ../labels/val/val_000_mask.png\n',
                     'does not exist'),
        'no label': ('../images/val/val_000.jpg ../labels/val/nope.png\n',
                     'has no label'),
        'twice': ('../images/val/val_000.jpg ../labels/val/val_000_mask.png\n'
                  * 2, 'again'),
        'empty': ('\n\n', 'lists no images'),
    }
    for case, (text, message) in cases.items():
        with open(os.path.join(lists, 'val.txt'), 'w') as f:
            f.write(text)
        with pytest.raises(UserError) as e:
            spec.get('val')
        assert message in str(e.value), case
        assert 'val.txt' in str(e.value), case


def test_missing_split_is_named(tmp_path):
    path = dataset_factory.make_own_dataset(str(tmp_path), splits=('val',),
                                            n_images=1)
    with pytest.raises(UserError, match="no 'train' split"):
        registry.lookup(path).get('train')


def test_data_dir_replaces_the_files_folder(tmp_path):
    data = dataset_factory.make_own_dataset(str(tmp_path / 'data'),
                                            n_images=1)
    with open(data) as f:
        desc = json.load(f)
    elsewhere = _write(str(tmp_path), 'elsewhere.json', desc)
    with pytest.raises(UserError, match='does not exist'):
        registry.lookup(elsewhere).get('val')
    ds = registry.lookup(elsewhere).get('val', str(tmp_path / 'data'))
    assert len(ds) == 1


# -- labels -----------------------------------------------------------------

@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_items_hold_class_ids(layout, tmp_path):
    """Stored values become class ids; ignored values -1 (palette PNGs are
    read as indices, label_map applied)."""
    kwargs = dict(LAYOUTS[layout], n_images=2)
    path = dataset_factory.make_own_dataset(str(tmp_path), **kwargs)
    spec = registry.lookup(path)
    n_class = len(kwargs['classes'])
    assert spec.n_class == n_class and spec.name == path
    stored = {c: kwargs.get('label_map', {}).get(c, c)
              for c in range(n_class)}
    ds = spec.get('train')
    for i in range(len(ds)):
        raw = base.read_label_image(ds.label_paths[i])
        img, label = ds[i]
        assert img.shape == (3,) + label.shape
        assert set(np.unique(label)) == set(range(-1, n_class))
        for c, value in stored.items():
            assert ((raw == value) == (label == c)).all()
        assert ((raw == kwargs.get('ignore_label', 255))
                == (label == -1)).all()


def _bad_label_dataset(tmp_path, value, **kwargs):
    path = dataset_factory.make_own_dataset(str(tmp_path), n_images=2,
                                            palette=False, **kwargs)
    label_path = os.path.join(str(tmp_path), 'labels', 'val',
                              'val_001{}.png'.format(kwargs.get(
                                  'label_suffix', '_mask')))
    raw = np.asarray(Image.open(label_path)).copy()
    raw[3, 5] = value
    Image.fromarray(raw).save(label_path)
    return path, label_path


@pytest.mark.parametrize('value,kwargs', [
    (3, {}),                                  # one past the classes
    (254, {}),                                # neither class nor 255
    (255, dict(ignore_label=100)),            # 255 is no longer ignored
    (1, dict(label_map={0: 10, 1: 20, 2: 30})),  # unmapped stored value
])
def test_bad_label_value_names_file_and_value(tmp_path, value, kwargs):
    path, label_path = _bad_label_dataset(tmp_path, value, **kwargs)
    ds = registry.lookup(path).get('val')
    with pytest.raises(UserError) as e:
        ds.check_labels()
    text = str(e.value)
    assert label_path in text and 'the value {} '.format(value) in text
    assert '\n' not in text


def test_label_of_another_size_and_colour_label(tmp_path):
    path = dataset_factory.make_own_dataset(str(tmp_path), n_images=1)
    label_path = os.path.join(str(tmp_path), 'labels', 'val',
                              'val_000_mask.png')
    Image.new('L', (10, 10)).save(label_path)
    with pytest.raises(UserError, match='its image'):
        registry.lookup(path).get('val').check_labels()
    Image.new('RGB', (96, 64)).save(label_path)
    with pytest.raises(UserError, match='RGB image'):
        registry.lookup(path).get('val').check_labels()


def test_bad_label_stops_the_scripts_before_work(tmp_path):
    path, label_path = _bad_label_dataset(tmp_path, 7)
    weights = str(tmp_path / 'w.npz')
    chainer.serializers.save_npz(weights, PSPNetResNet50(3, input_size=64))
    for argv in (
            [os.path.join(ROOT, 'eval_semantic_segmentation.py'),
             '--dataset', path, '--model', 'pspnet_resnet50',
             '--pretrained-model', weights],
            [MPIEXEC, '-n', '2', sys.executable,
             os.path.join(ROOT, 'train_multi.py'), '--dataset', path,
             '--model', 'pspnet_resnet50', '--pretrained-model', 'none',
             '--out', str(tmp_path / 'out'), '--loaderjob', '0']):
        if argv[0] == MPIEXEC:
            if not os.path.isfile(MPIEXEC):
                continue
            result = _run(argv)
        else:
            result = _run_script(argv)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert label_path in lines[0] and 'the value 7 ' in lines[0]
    assert not os.path.exists(str(tmp_path / 'out' / 'model_final.npz'))


def test_label_check_is_cached(tmp_path, monkeypatch):
    path = dataset_factory.make_own_dataset(str(tmp_path), n_images=3)
    ds = registry.lookup(path).get('train')
    first = ds.check_labels()

    def no_reading(path):
        raise AssertionError('read ' + path)
    monkeypatch.setattr(base, 'read_label_image', no_reading)
    np.testing.assert_array_equal(
        registry.lookup(path).get('train').check_labels(), first)
    # A changed file is read again.
    monkeypatch.undo()
    label_path = ds.label_paths[1]
    raw = np.asarray(Image.open(label_path)).copy()
    raw[:] = 9
    img = Image.fromarray(raw, mode='P')
    img.putpalette(Image.open(label_path).getpalette())
    img.save(label_path)
    os.utime(label_path, ns=(1, 1))
    with pytest.raises(UserError, match='the value 9 '):
        registry.lookup(path).get('train').check_labels()


# -- label encodings --------------------------------------------------------

def _pillow_1bit(path, values):
    Image.fromarray(values.astype(bool)).save(path)


def _palette(bits):
    def write(path, values):
        dataset_factory.write_png(path, values, bits, 3, palette=[
            (i, 255 - i, 7 * i % 256) for i in range(2 ** bits)])
    return write


def _pillow_palette_transparent(path, values):
    img = Image.fromarray(values.astype(np.uint8), mode='P')
    img.putpalette([c for i in range(256) for c in (i, i, 255 - i)])
    img.save(path, transparency=0)


def _cv2(dtype):
    def write(path, values):
        import cv2
        assert cv2.imwrite(path, values.astype(dtype))
    return write


#: Encodings of label maps that are read as their stored values: (writer,
#: the values the file may hold).
LABEL_ENCODINGS = {
    '1-bit (Pillow)': (_pillow_1bit, [0, 1]),
    '1-bit grey': (lambda p, v: dataset_factory.write_png(p, v, 1), [0, 1]),
    '2-bit grey': (lambda p, v: dataset_factory.write_png(p, v, 2),
                   list(range(4))),
    '4-bit grey': (lambda p, v: dataset_factory.write_png(p, v, 4),
                   list(range(16))),
    '8-bit grey': (_cv2(np.uint8), list(range(12)) + [200]),
    '16-bit grey': (_cv2(np.uint16), [0, 3, 256, 1000, 65534]),
    '16-bit grey (hand)': (lambda p, v: dataset_factory.write_png(p, v, 16),
                           [1, 255, 4096, 65535]),
    '1-bit palette': (_palette(1), [0, 1]),
    '2-bit palette': (_palette(2), list(range(4))),
    '4-bit palette': (_palette(4), list(range(16))),
    '8-bit palette': (_palette(8), [0, 5, 17, 254]),
    'palette with transparency': (_pillow_palette_transparent, [0, 1, 2]),
}


def _rgb(bits, alpha=False):
    def write(path, values):
        channels = [values] * 3 + ([np.full_like(values, 2 ** bits - 1)]
                                   if alpha else [])
        dataset_factory.write_png(path, np.dstack(channels), bits,
                                  6 if alpha else 2)
    return write


def _grey_alpha(bits):
    def write(path, values):
        dataset_factory.write_png(path, np.dstack(
            [values, np.full_like(values, 2 ** bits - 1)]), bits, 4)
    return write


#: Encodings that are refused: (writer, PIL mode, words of the message).
REFUSED_ENCODINGS = {
    '8-bit RGB': (_rgb(8), 'RGB', 'a colour picture'),
    '16-bit RGB': (_rgb(16), 'RGB', 'a colour picture'),
    '8-bit RGBA': (_rgb(8, alpha=True), 'RGBA', 'a colour picture'),
    '8-bit grey and alpha': (_grey_alpha(8), 'LA', 'alpha'),
    '16-bit grey and alpha': (_grey_alpha(16), 'RGBA', 'colour'),
    'grey RGB by OpenCV': (lambda p, v: _cv2(np.uint8)(
        p, np.dstack([v] * 3)), 'RGB', 'colours are not read as classes'),
}


def _one_label_dataset(root, write, values, rng):
    """A described dataset of one image and its label map, written by
    ``write`` with random ``values``, one class per value (label_map)."""
    h, w = (int(n) for n in rng.randint(5, 40, 2))
    raw = rng.choice(values, (h, w))
    raw.flat[:len(values)] = values  # every value appears
    raw = rng.permutation(raw.ravel()).reshape(h, w)
    os.makedirs(os.path.join(root, 'images'))
    os.makedirs(os.path.join(root, 'labels'))
    Image.fromarray(rng.randint(0, 256, (h, w, 3)).astype(np.uint8)).save(
        os.path.join(root, 'images', 'a.jpg'))
    write(os.path.join(root, 'labels', 'a.png'), raw)
    ignore = 65535 if 65535 not in values else 0
    path = _write(root, 'dataset.json', {
        'classes': ['c{}'.format(v) for v in values],
        'label_map': {str(v): c for c, v in enumerate(values)},
        'ignore_label': ignore,
        'train': {'images': 'images', 'labels': 'labels'}})
    return path, raw


@pytest.mark.parametrize('encoding', sorted(LABEL_ENCODINGS))
def test_label_encodings_read_as_stored_values(encoding, tmp_path):
    """1-bit masks give 0 and 1, 2- and 4-bit grey their stored values (not
    Pillow's 8-bit expansion: 3 in a 2-bit file is not 255, the ignore
    value), palettes their indices, 16-bit files their values: through
    the reader, the described dataset's check and counts, training's
    header check and the items."""
    write, values = LABEL_ENCODINGS[encoding]
    rng = np.random.RandomState(len(encoding))
    path, raw = _one_label_dataset(str(tmp_path), write, values, rng)
    ds = registry.lookup(path).get('train')
    np.testing.assert_array_equal(base.read_label_image(ds.label_paths[0]),
                                  raw)
    ids = np.searchsorted(values, raw)
    counts = np.bincount(ids.ravel(), minlength=len(values))
    np.testing.assert_array_equal(ds.check_labels(),
                                  [counts, np.where(counts, raw.size, 0)])
    _header_check(ds)
    np.testing.assert_array_equal(ds[0][1], ids)


@pytest.mark.parametrize('encoding', sorted(REFUSED_ENCODINGS))
def test_colour_and_alpha_labels_are_refused_in_plain_words(encoding,
                                                            tmp_path):
    write, mode, words = REFUSED_ENCODINGS[encoding]
    rng = np.random.RandomState(len(encoding))
    path, _ = _one_label_dataset(str(tmp_path), write, [0, 1, 2], rng)
    ds = registry.lookup(path).get('train')
    label_path = ds.label_paths[0]
    for check in (lambda: base.read_label_image(label_path),
                  ds.check_labels, lambda: _header_check(ds),
                  lambda: ds[0]):
        with pytest.raises(UserError) as e:
            check()
        text = str(e.value)
        assert text.startswith('label image {} is a {} image, '.format(
            label_path, mode)), text
        assert words in text and 'single-channel' in text, text


def test_other_label_files_are_refused(tmp_path):
    """Floating-point and CMYK files (any label_extension) are refused,
    and 32-bit files with negative values name the value."""
    import cv2
    rng = np.random.RandomState(0)
    path = str(tmp_path / 'float.tif')
    cv2.imwrite(path, rng.rand(4, 5).astype(np.float32))
    with pytest.raises(UserError, match='is a F image, of floating-point'):
        base.read_label_image(path)
    path = str(tmp_path / 'cmyk.jpg')
    Image.new('CMYK', (4, 5)).save(path)
    with pytest.raises(UserError, match='is a CMYK image, a colour'):
        base.read_label_image(path)
    root = str(tmp_path / 'int32')
    dataset, _ = _one_label_dataset(root, lambda p, v: None, [0, 1, 2], rng)
    with open(dataset) as f:
        desc = json.load(f)
    desc['train']['label_extension'] = '.tif'
    _write(root, 'dataset.json', desc)
    label = rng.randint(0, 3, (8, 8)).astype(np.int32)
    label[2, 3] = -5
    Image.fromarray(label, mode='I').save(os.path.join(root, 'labels',
                                                       'a.tif'))
    Image.new('RGB', (8, 8)).save(os.path.join(root, 'images', 'a.jpg'))
    ds = registry.lookup(dataset).get('train')
    with pytest.raises(UserError, match='holds the value -5 '):
        ds.check_labels()


@pytest.mark.parametrize('compression', [None, 'tiff_deflate'])
@pytest.mark.parametrize('mode', ['1', 'L', 'I;16', 'P'])
def test_tiff_labels_with_an_orientation(tmp_path, mode, compression):
    """TIFF label maps (label_extension .tif) are read as displayed for
    each orientation, also uncompressed single-channel ones, which
    Pillow scrambles when it turns them in a memory-mapped file."""
    rng = np.random.RandomState(len(mode))
    for orientation in range(1, 9):
        h, w = (int(n) for n in rng.randint(3, 30, 2))
        w += h  # not square
        values = rng.randint(0, {'1': 2, 'I;16': 65536}.get(mode, 256),
                             (h, w))
        stored = dataset_factory.stored_for_display(
            values.astype(np.uint16 if mode == 'I;16' else np.uint8),
            orientation)
        image = (Image.fromarray(stored.astype(bool)) if mode == '1'
                 else Image.fromarray(stored, mode if mode == 'P' else None))
        if mode == 'P':
            image.putpalette([i % 256 for i in range(768)])
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = str(tmp_path / 'label{}.tif'.format(orientation))
        image.save(path, exif=exif.tobytes(), compression=compression)
        header = base.image_header(path)
        assert header.size == (w, h) and header.mode == mode
        np.testing.assert_array_equal(base.read_label_image(path), values)


# -- photos with an EXIF orientation ---------------------------------------

ORIENTED_SIZE = (40, 56)   # displayed (height, width): not square
ORIENTED_LABELS = dict(classes=('bg', 'cell', 'nucleus'), palette=False,
                       label_map={0: 10, 1: 20, 2: 30}, ignore_label=0)
STORED_ORIENTATION = 'label maps must follow the displayed orientation'


def _orient_photos(path):
    """Store image k of each split with EXIF orientation k % 8 + 1 and the
    picture turned so that viewers still show the generated one (its
    label map, unchanged, is drawn on the image as displayed).

    Returns:
        dict: split -> list of (displayed RGB, raw label, orientation).
    """
    items = {}
    for split in ('train', 'val'):
        ds = registry.lookup(path).get(split)
        items[split] = []
        for k, (img_path, label_path) in enumerate(zip(ds.img_paths,
                                                       ds.label_paths)):
            displayed = np.asarray(Image.open(img_path).convert('RGB'))
            orientation = k % 8 + 1
            dataset_factory.write_oriented(img_path, displayed, orientation,
                                           quality=98, subsampling=0)
            raw = np.asarray(Image.open(label_path))
            items[split].append((displayed, raw, orientation))
    return items


@pytest.fixture(scope='module')
def oriented(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('oriented') / 'data')
    path = dataset_factory.make_own_dataset(
        root, n_images=8, size=ORIENTED_SIZE, seed=7, **ORIENTED_LABELS)
    return path, _orient_photos(path)


def _copy(oriented, tmp_path):
    import shutil
    path, items = oriented
    root = str(tmp_path / 'copy')
    shutil.copytree(os.path.dirname(path), root)
    return os.path.join(root, os.path.basename(path)), items


def _expected_ids(raw):
    ids = np.full(raw.shape, -1, np.int32)
    for c, value in ORIENTED_LABELS['label_map'].items():
        ids[raw == value] = c
    return ids


def _header_check(dataset):
    from pspnet.training import loader
    loader.check_label_files(dataset, range(len(dataset)))


def test_photos_pair_with_labels_drawn_as_displayed(oriented):
    """Images with each of the 8 orientations: the up-front checks
    (values and sizes; training's header check) accept the labels drawn
    on the image as displayed, and every item pairs the image as
    displayed with its label, aligned."""
    path, items = oriented
    for split in ('train', 'val'):
        ds = registry.lookup(path).get(split)
        assert sorted(o for _, _, o in items[split]) == list(range(1, 9))
        ds.check_labels()
        _header_check(ds)
        for i, (displayed, raw, orientation) in enumerate(items[split]):
            header = base.image_header(ds.img_paths[i])
            assert header.size == ORIENTED_SIZE[::-1]
            assert header.orientation == orientation
            img, label = ds[i]
            assert img.shape == (3,) + ORIENTED_SIZE
            assert np.abs(img.transpose(1, 2, 0) - displayed).mean() < 4
            np.testing.assert_array_equal(label, _expected_ids(raw))
            if orientation != 1:  # stored otherwise: far from displayed
                stored = np.asarray(Image.open(ds.img_paths[i]))
                assert (stored.shape != displayed.shape or np.abs(
                    stored.astype(float) - displayed).mean() > 20)


@pytest.mark.parametrize('orientation', [5, 6, 7, 8])
def test_labels_drawn_on_the_stored_picture_are_refused(oriented, tmp_path,
                                                        orientation):
    """A label map of the stored picture of a turned, non-square photo is
    refused by every check, saying that labels follow the displayed
    orientation: the described dataset's check, training's header check,
    the item itself, and the evaluation before the model loads."""
    path, items = _copy(oriented, tmp_path)
    ds = registry.lookup(path).get('val')
    i = orientation - 1
    displayed, raw, found = items['val'][i]
    assert found == orientation
    Image.fromarray(dataset_factory.stored_for_display(raw, orientation)
                    ).save(ds.label_paths[i])
    ds = registry.lookup(path).get('val')
    for check in (ds.check_labels, lambda: _header_check(ds),
                  lambda: ds[i]):
        with pytest.raises(UserError) as e:
            check()
        text = str(e.value)
        assert STORED_ORIENTATION in text and ds.label_paths[i] in text
        assert '{}x{}'.format(*ORIENTED_SIZE) in text  # the stored size
    out = str(tmp_path / 'pred')
    result = _run_script([
        os.path.join(ROOT, 'eval_semantic_segmentation.py'), '--dataset',
        path, '--model', 'pspnet_resnet50', '--pretrained-model',
        str(tmp_path / 'not_loaded.npz'), '--save-predictions', out])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert STORED_ORIENTATION in lines[0]
    assert not os.path.exists(out)


@pytest.mark.parametrize('orientation', range(1, 9))
def test_label_files_carrying_an_orientation_are_read_as_displayed(
        oriented, tmp_path, orientation):
    """A label PNG that carries its photo's EXIF orientation (saved with
    the photo's metadata, drawn on the stored picture) is shown turned
    like the photo by viewers, and read so: aligned."""
    path, items = _copy(oriented, tmp_path)
    ds = registry.lookup(path).get('train')
    i = orientation - 1
    displayed, raw, found = items['train'][i]
    assert found == orientation
    dataset_factory.write_oriented(ds.label_paths[i], raw, orientation)
    ds = registry.lookup(path).get('train')
    ds.check_labels()
    _header_check(ds)
    np.testing.assert_array_equal(ds[i][1], _expected_ids(raw))
    np.testing.assert_array_equal(base.read_label_image(ds.label_paths[i]),
                                  raw)


def test_evaluation_of_photos_with_orientations(oriented, tmp_path, capsys):
    """Evaluation counts each image as displayed against its label, and
    writes predictions of the displayed size."""
    path, items = oriented
    np.random.seed(3)
    model = PSPNetResNet50(3, input_size=CROP)
    weights = str(tmp_path / 'w.npz')
    chainer.serializers.save_npz(weights, model)
    out, pred = str(tmp_path / 'e.json'), tmp_path / 'pred'
    eval_semantic_segmentation.main([
        '--dataset', path, '--model', 'pspnet_resnet50',
        '--pretrained-model', weights, '--input-size', str(CROP),
        '--json', out, '--save-predictions', str(pred), '--no-flip'])
    capsys.readouterr()
    with open(out) as f:
        record = json.load(f)
    model = PSPNetResNet50(pretrained_model=weights, input_size=CROP)
    model.flip = False
    ds = registry.lookup(path).get('val')
    preds = model.predict([ds[i][0] for i in range(len(ds))])
    from pspnet.evaluations import calc_semantic_segmentation_confusion
    expected = calc_semantic_segmentation_confusion(
        preds, [_expected_ids(raw) for _, raw, _ in items['val']], n_class=3)
    np.testing.assert_array_equal(record['confusion'], expected)
    assert np.asarray(record['confusion']).sum() == sum(
        int((_expected_ids(raw) >= 0).sum()) for _, raw, _ in items['val'])
    written = sorted(pred.rglob('*.png'))
    assert len(written) == len(items['val'])
    for name, p in zip(written, preds):
        np.testing.assert_array_equal(np.asarray(Image.open(str(name))), p)


@pytest.mark.skipif(not os.path.isfile(MPIEXEC),
                    reason='no mpiexec next to {} (pip install mpich)'.format(
                        sys.executable))
def test_two_process_training_on_photos_with_orientations(oriented,
                                                          tmp_path):
    """mpiexec -n 2 training takes the photos as displayed with their
    labels; a label of the stored picture that only process 1 checks
    stops every process before the model loads, in one line."""
    path, items = _copy(oriented, tmp_path)
    command = [MPIEXEC, '-n', '2', sys.executable,
               os.path.join(ROOT, 'train_multi.py'), '--dataset', path,
               '--model', 'pspnet_resnet50', '--crop-size', str(CROP),
               '--batchsize', '1', '--iteration', '1',
               '--pretrained-model', 'none', '--val-interval', '0',
               '--loaderjob', '0', '--no-progress']
    result = _run(command + ['--out', str(tmp_path / 'ok')])
    assert result.returncode == 0, result.stdout + result.stderr
    ds = registry.lookup(path).get('train')
    i = 5  # orientation 6; odd: process 1's share of the header check
    displayed, raw, orientation = items['train'][i]
    assert orientation == 6
    Image.fromarray(dataset_factory.stored_for_display(raw, orientation)
                    ).save(ds.label_paths[i])
    result = _run(command + ['--out', str(tmp_path / 'refused')])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith('error: process 1: ')
    assert STORED_ORIENTATION in lines[0] and ds.label_paths[i] in lines[0]
    assert not os.path.exists(str(tmp_path / 'refused' / 'model_final.npz'))


# -- class weights ----------------------------------------------------------

def test_median_frequency_weights_by_hand(tmp_path):
    # Class 0 in both images (100 + 60 of 100 + 100 pixels), class 1 only
    # in image 1 (40 of 100), class 2 nowhere.
    totals = np.array([[160, 40, 0], [200, 100, 0]])
    weights = class_weights.median_frequency_weights(totals)
    freq = np.array([0.8, 0.4])
    median = np.median(freq)
    np.testing.assert_allclose(weights, list(median / freq) + [1.0])


def test_counts_of_generated_labels(tmp_path):
    path = dataset_factory.make_own_dataset(str(tmp_path), n_images=3)
    ds = registry.lookup(path).get('train')
    totals = ds.check_labels()
    pixels = np.zeros(3, np.int64)
    image_pixels = np.zeros(3, np.int64)
    for i in range(len(ds)):
        label = ds.get_label(i)
        counts = np.bincount(label[label >= 0], minlength=3)
        pixels += counts
        image_pixels += np.where(counts > 0, (label >= 0).sum(), 0)
    np.testing.assert_array_equal(totals, [pixels, image_pixels])
    # Shares of the items add up to the whole.
    np.testing.assert_array_equal(
        ds.check_labels([0]) + ds.check_labels([1, 2]), totals)


@pytest.mark.parametrize('text,expected', [
    ('[1, 2.5, 0]', (1.0, 2.5, 0.0)),
    ('1\n2.5\n0\n', (1.0, 2.5, 0.0)),
    ('# weights\n1 # bg\n2.5, 0\n', (1.0, 2.5, 0.0)),
])
def test_class_weight_files(tmp_path, text, expected):
    path = _write(str(tmp_path), 'w.txt', text)
    assert flags.class_weight(path) == expected
    assert flags.class_weight('median') == 'median'


@pytest.mark.parametrize('text,message', [
    ('[1, -1]', 'at least 0'),
    ('[1, "a"]', 'finite numbers'),
    ('1\nx\n', "'x' is not a number"),
    ('[0, 0]', 'no positive class weight'),
    ('', 'no positive class weight'),
    ('1\nnan\n', 'finite numbers'),
])
def test_bad_class_weight_files(tmp_path, text, message):
    import argparse
    path = _write(str(tmp_path), 'w.txt', text)
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        flags.class_weight(path)
    with pytest.raises(argparse.ArgumentTypeError, match='cannot read'):
        flags.class_weight(str(tmp_path / 'missing.txt'))


def test_class_weight_count_must_match(tmp_path):
    from pspnet.training import run
    path = dataset_factory.make_own_dataset(str(tmp_path), n_images=1)
    options = vars(train_multi.parse_args([
        '--dataset', path, '--model', 'pspnet_resnet50',
        '--class-weight', _write(str(tmp_path), 'w.json', '[1, 2]')]))
    with pytest.raises(UserError, match='2 class weights but the dataset '
                       'has 3'):
        run.resolve_config(options)
    options['class_weight'] = (1.0, 2.0, 3.0)
    config = run.resolve_config(options)
    assert config['class_weight'] == [1.0, 2.0, 3.0]
    assert config['crop_size'] == description.DESCRIPTION_INPUT_SIZE
    assert config['iteration'] == description.DESCRIPTION_ITERATIONS


@pytest.mark.parametrize('seed', range(3))
def test_weighted_loss_is_the_weighted_cross_entropy(seed):
    """Both losses weigh the pixels of class c by weight c."""
    rng = np.random.RandomState(seed)
    n_class = int(rng.randint(2, 5))
    weight = rng.uniform(0.1, 3, n_class).astype(np.float32)
    model = PSPNetResNet50(n_class=n_class, input_size=48)
    chain = TrainChain(model, class_weight=weight, dropout_ratio=0)
    imgs = rng.uniform(-100, 100, (1, 3, 48, 48)).astype(np.float32)
    labels = rng.randint(-1, n_class, (1, 48, 48)).astype(np.int32)
    with chainer.using_config('train', False):
        chain(imgs, labels)
        main, aux = chain.logits(imgs)
    for logits in (main, aux):
        log_p = F.log_softmax(logits).array
        valid = labels >= 0
        picked = np.take_along_axis(log_p, np.maximum(labels, 0)[:, None],
                                    1)[:, 0]
        expected = -(weight[np.maximum(labels, 0)] * picked)[valid].sum() \
            / valid.sum()
        got = F.softmax_cross_entropy(logits, labels,
                                      class_weight=weight).array
        assert got == pytest.approx(expected, rel=1e-4)
    with chainer.using_config('train', False):
        loss = chain(imgs, labels).array
    expected = (F.softmax_cross_entropy(main, labels, class_weight=weight)
                + 0.4 * F.softmax_cross_entropy(aux, labels,
                                                class_weight=weight)).array
    assert loss == pytest.approx(float(expected), rel=1e-4)
    with pytest.raises(ValueError):
        TrainChain(model, class_weight=weight[:-1])


@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_test_split_without_labels_writes_predictions(layout, tmp_path,
                                                      capsys):
    # A described test split may have no labels (folders without
    # "labels", list lines with the image only): predictions, no metrics.
    path = dataset_factory.make_own_dataset(
        str(tmp_path / 'data'), layout=layout, splits=('train', 'val',
                                                      'test'),
        n_images=2, size=(40, 52), seed=3)
    root = os.path.dirname(path)
    with open(path) as f:
        desc = json.load(f)
    if layout == 'list':
        list_path = os.path.join(root, desc['test']['list'])
        with open(list_path) as f:
            images = [line.split()[0] for line in f if line.strip()]
        with open(list_path, 'w') as f:
            f.write(''.join(img + '\n' for img in images))
    else:
        del desc['test']['labels']
        desc['test'].pop('label_suffix', None)
    with open(path, 'w') as f:
        json.dump(desc, f)
    dataset = registry.lookup(path).get('test', 'auto')
    assert not dataset.has_labels and len(dataset) == 2
    assert dataset[0][1] is None
    assert not dataset.check_labels().any()
    # train and val still need their labels.
    assert registry.lookup(path).get('val', 'auto').has_labels
    n_class = len(desc['classes'])
    np.random.seed(1)
    weights = str(tmp_path / 'w.npz')
    chainer.serializers.save_npz(weights, PSPNetResNet50(n_class,
                                                         input_size=CROP))
    out = tmp_path / 'pred'
    eval_semantic_segmentation.main([
        '--dataset', path, '--model', 'pspnet_resnet50', '--split', 'test',
        '--pretrained-model', weights, '--input-size', str(CROP),
        '--save-predictions', str(out)])
    printed = capsys.readouterr().out
    assert 'no metrics' in printed and 'mean IoU' not in printed
    written = sorted(str(p.relative_to(out)) for p in out.rglob('*.png'))
    assert len(written) == 2
    for name in written:
        label = np.asarray(Image.open(str(out / name)))
        assert label.shape == (40, 52)
        assert label.max() < n_class


def test_mixed_list_of_a_test_split_is_one_line(tmp_path):
    path = dataset_factory.make_own_dataset(
        str(tmp_path / 'data'), layout='list', splits=('train', 'test'),
        n_images=2, size=(32, 32))
    list_path = os.path.join(os.path.dirname(path), 'lists', 'test.txt')
    with open(list_path) as f:
        lines = f.read().splitlines()
    with open(list_path, 'w') as f:
        f.write(lines[0] + '\n' + lines[1].split()[0] + '\n')
    with pytest.raises(UserError, match='line 2 has 1 field.*line 1 had 2'):
        registry.lookup(path).get('test', 'auto')
    # Outside the test split, an image without label stays an error.
    list_path = os.path.join(os.path.dirname(path), 'lists', 'train.txt')
    with open(list_path) as f:
        first = f.read().splitlines()[0].split()[0]
    with open(list_path, 'w') as f:
        f.write(first + '\n')
    with pytest.raises(UserError, match='not "IMAGE LABEL"'):
        registry.lookup(path).get('train', 'auto')
