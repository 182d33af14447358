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


@pytest.fixture(autouse=True)
def _dataset_root(tmp_path_factory, monkeypatch):
    """Label-check caches go to a temporary dataset root."""
    root = str(tmp_path_factory.getbasetemp() / 'chainer_dataset')
    monkeypatch.setenv('CHAINER_DATASET_ROOT', root)
    old = chainer.dataset.get_dataset_root()
    chainer.dataset.set_dataset_root(root)
    yield
    chainer.dataset.set_dataset_root(old)


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
    real = demo.visualizations.segmentation_figure

    def recording(img, label, names, colors, **kwargs):
        legends.append((names, np.asarray(colors)))
        return real(img, label, names, colors, **kwargs)
    monkeypatch.setattr(demo.visualizations, 'segmentation_figure',
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
