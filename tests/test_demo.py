"""demo.py end to end on generated images with small random weights."""

import errno
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

import demo
from pspnet import atomic
from pspnet import datasets
from pspnet import visualizations
from pspnet.apps import demo as demo_app
from tests.helpers.random_weights import save_random_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, 'demo.py')
N_CLASS = 19
SIZE = 64
NAMES = datasets.cityscapes_semantic_segmentation_label_names


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    return save_random_weights(
        tmp_path_factory.mktemp('weights') / 'pspnet19.npz', N_CLASS, SIZE)


def run_demo(*args, cwd):
    env = dict(os.environ, MPLBACKEND='Agg')
    return subprocess.run(
        [sys.executable, DEMO, '--model', 'pspnet_resnet50'] + list(args),
        cwd=str(cwd), env=env, capture_output=True, text=True, timeout=300)


def write_rgb(path, H, W, seed=0):
    rng = np.random.RandomState(seed)
    cv2.imwrite(str(path), rng.randint(0, 256, (H, W, 3), np.uint8))


def check_outputs(prefix, H, W):
    label = cv2.imread(prefix + '_label.png', cv2.IMREAD_UNCHANGED)
    assert label.dtype == np.uint8 and label.shape == (H, W)
    assert label.max() < N_CLASS
    for kind in ('color', 'overlay'):
        picture = cv2.imread('{}_{}.png'.format(prefix, kind))
        assert picture.shape == (H, W, 3)
    figure = cv2.imread(prefix + '_figure.png')
    assert figure is not None and figure.shape[1] > W
    return label


def test_one_image(weights, tmp_path):
    write_rgb(tmp_path / 'street.jpg', 64, 96)
    result = run_demo('--pretrained-model', weights, '--input-size',
                      str(SIZE), '--output', 'out/street', 'street.jpg',
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'out/street_label.png' in result.stdout
    assert 'out/street_figure.png' in result.stdout
    label = check_outputs(str(tmp_path / 'out' / 'street'), 64, 96)
    color = cv2.imread(str(tmp_path / 'out' / 'street_color.png'))[:, :, ::-1]
    expected = np.asarray(
        datasets.cityscapes_semantic_segmentation_label_colors,
        np.uint8)[label]
    np.testing.assert_array_equal(color, expected)


def test_default_output_prefix(weights, tmp_path):
    write_rgb(tmp_path / 'small.png', 50, 40)
    result = run_demo('--pretrained-model', weights, '--input-size',
                      str(SIZE), 'small.png', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check_outputs(str(tmp_path / 'result' / 'small'), 50, 40)


def test_figure_legend_names_classes_present(weights, tmp_path, monkeypatch):
    # In-process, on an image larger than the input size (tiled prediction).
    write_rgb(tmp_path / 'wide.png', 80, 150, seed=1)
    figures = []
    make_figure = visualizations.segmentation_figure

    def recording_figure(*args, **kwargs):
        figures.append(make_figure(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(visualizations, 'segmentation_figure',
                        recording_figure)
    monkeypatch.chdir(tmp_path)
    demo.main(['--model', 'pspnet_resnet50', '--pretrained-model', weights,
               '--input-size', str(SIZE), 'wide.png'])
    label = check_outputs(str(tmp_path / 'result' / 'wide'), 80, 150)
    (fig, handles), = figures
    # The classes present, largest share first (ties in id order), each
    # with its share; those under 0.1 % folded into one last entry.
    counts = np.bincount(label.ravel(), minlength=N_CLASS)
    ids = sorted(np.flatnonzero(counts), key=lambda c: (-counts[c], c))
    present = ['{} {:.1f} %'.format(NAMES[c], 100 * counts[c] / label.size)
               for c in ids if counts[c] * 1000 >= label.size]
    small = [c for c in ids if counts[c] * 1000 < label.size]
    if small:
        share = counts[small].sum() / label.size
        present.append('+{} more ({})'.format(len(small), '< 0.1 %' if share
                                              < 0.001 else '{:.1f} %'.format(
                                                  100 * share)))
    legend = fig.axes[1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == present
    assert [h.get_label() for h in handles] == present


def test_folder_of_image_kinds(weights, tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.RandomState(2)
    cv2.imwrite(str(folder / 'gray.png'),
                rng.randint(0, 256, (48, 60), np.uint8))
    Image.fromarray(rng.randint(0, 256, (40, 50, 4)).astype(np.uint8),
                    'RGBA').save(folder / 'rgba.png')
    cv2.imwrite(str(folder / 'deep.png'),
                rng.randint(0, 65536, (30, 70, 3)).astype(np.uint16))
    write_rgb(folder / 'large.jpg', 100, 90)
    (folder / 'notes.txt').write_text('not an image')
    result = run_demo('--pretrained-model', weights, '--input-size',
                      str(SIZE), '--output', 'out', 'images', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '4 image(s)' in result.stdout
    for stem, (H, W) in {'gray': (48, 60), 'rgba': (40, 50),
                         'deep': (30, 70), 'large': (100, 90)}.items():
        check_outputs(str(tmp_path / 'out' / stem), H, W)


def test_unreadable_image_in_folder_is_skipped(weights, tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    write_rgb(folder / 'good.png', 40, 40)
    (folder / 'bad.jpg').write_bytes(b'garbage')
    result = run_demo('--pretrained-model', weights, '--input-size',
                      str(SIZE), 'images', cwd=tmp_path)
    assert result.returncode == 2
    assert 'skipped: cannot read image' in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        'error: 1 of 2 images could not be read')
    assert 'Traceback' not in result.stderr
    check_outputs(str(tmp_path / 'result' / 'good'), 40, 40)


def test_output_prefixes_in_folder_mode():
    images = ['a/x.jpg', 'b/x.jpg', 'a/x.png', 'y.png']
    prefixes, to_folder = demo_app.output_prefixes(images, images, 'out')
    assert to_folder
    assert prefixes == [os.path.join('out', n)
                        for n in ('x_jpg', 'x_jpg_2', 'x_png', 'y')]
    assert demo_app.output_prefixes(['a/x.jpg'], ['a/x.jpg'], None) == (
        [os.path.join('result', 'x')], False)
    assert demo_app.output_prefixes(['a/x.jpg'], ['a/x.jpg'], 'o' + os.sep) == (
        [os.path.join('o', 'x')], True)


def bad_inputs(weights, tmp_path):
    write_rgb(tmp_path / 'ok.png', 40, 40)
    (tmp_path / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
    with open(weights, 'rb') as f:
        (tmp_path / 'truncated.npz').write_bytes(f.read(1 << 20))
    (tmp_path / 'noise.npz').write_bytes(np.random.bytes(3000))
    return {
        'missing image': (['--pretrained-model', weights, 'nope.png'],
                          'does not exist'),
        'corrupt image': (['--pretrained-model', weights, 'corrupt.png'],
                          'not an image file or corrupt'),
        'missing weights': (['--pretrained-model', 'nope.npz', 'ok.png'],
                            'does not exist'),
        'truncated weights': (['--pretrained-model', 'truncated.npz',
                               'ok.png'], 'truncated or corrupt'),
        'noise weights': (['--pretrained-model', 'noise.npz', 'ok.png'],
                          'noise.npz'),
        'other class count': (['--pretrained-model', weights, '--dataset',
                               'ade20k', 'ok.png'], 'ade20k has 150'),
        'small input size': (['--pretrained-model', weights, '--input-size',
                              '10', 'ok.png'], 'too small'),
        'text input size': (['--pretrained-model', weights, '--input-size',
                             'big', 'ok.png'], 'expected an integer'),
        'show without display': (['--pretrained-model', weights, '--show',
                                  'ok.png'], 'needs a display'),
        'empty folder': (['--pretrained-model', weights, 'empty'],
                         'holds no images'),
    }


@pytest.mark.parametrize('case', [
    'missing image', 'corrupt image', 'missing weights', 'truncated weights',
    'noise weights', 'other class count', 'small input size',
    'text input size', 'show without display', 'empty folder'])
def test_bad_input_one_line_error(weights, tmp_path, case):
    (tmp_path / 'empty').mkdir()
    args, message = bad_inputs(weights, tmp_path)[case]
    result = run_demo(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('error: ')
    assert message in lines[0]
    assert not (tmp_path / 'result').exists()


def unreadable_files(folder, rng, n):
    """``n`` files named as images that no decoder reads, of random kinds."""
    kinds = {
        'garbage.jpg': lambda: rng.bytes(int(rng.randint(1, 500))),
        'empty.png': lambda: b'',
        'header_only.png': lambda: b'\x89PNG\r\n\x1a\n',
        'text.bmp': lambda: b'just some words',
        'cut.jpg': lambda: b'\xff\xd8\xff\xe0' + rng.bytes(20),
    }
    names = list(kinds)
    rng.shuffle(names)
    for name in names[:n]:
        (folder / name).write_bytes(kinds[name]())
    return names[:n]


@pytest.mark.parametrize('seed', [0, 1])
def test_folder_of_only_unreadable_images_leaves_nothing(weights, tmp_path,
                                                         seed):
    rng = np.random.RandomState(seed)
    folder = tmp_path / 'images'
    folder.mkdir()
    n = int(rng.randint(1, 6))
    unreadable_files(folder, rng, n)
    output = ['--output', 'new/deeper/'] if seed % 2 else []
    before = sorted(str(p) for p in tmp_path.rglob('*'))
    result = run_demo('--pretrained-model', weights, '--input-size',
                      str(SIZE), *(output + ['images']), cwd=tmp_path)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len([line for line in lines if line.startswith('skipped: ')]) == n
    assert lines[-1] == ('error: none of the {} images could be read (see the '
                         'skipped lines above); nothing was written; fix or '
                         'remove them'.format(n))
    assert 'wrote' not in result.stdout
    assert sorted(str(p) for p in tmp_path.rglob('*')) == before


def test_all_inputs_of_a_mixed_batch_unreadable(weights, tmp_path):
    # Images and a video: "inputs"; no folder left behind.
    (tmp_path / 'a.png').write_bytes(b'garbage')
    (tmp_path / 'b.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42' * 10)
    result = run_demo('--pretrained-model', weights, '--input-size',
                      str(SIZE), '--output', 'out/', 'a.png', 'b.mp4',
                      cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        'error: none of the 2 inputs could be read')
    assert sorted(os.listdir(str(tmp_path))) == ['a.png', 'b.mp4']


def test_batch_failing_midway_removes_what_it_made(weights, tmp_path,
                                                   monkeypatch):
    # A failure that is no bad input (here a crash on the third image)
    # removes the files and folders the run made; a file that was there
    # before stays.
    folder = tmp_path / 'images'
    folder.mkdir()
    for i in range(4):
        write_rgb(folder / 'im{}.png'.format(i), 24, 32, seed=i)
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'im0_label.png').write_bytes(b'from before')
    calls = []
    segment = demo_app.segment

    def crashing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError('boom')
        return segment(*args, **kwargs)

    monkeypatch.setattr(demo_app, 'segment', crashing)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError):
        demo.main(['--model', 'pspnet_resnet50', '--pretrained-model',
                   weights, '--input-size', str(SIZE), '--output',
                   'out/new/', 'images'])
    assert sorted(os.listdir(str(tmp_path / 'out'))) == ['im0_label.png']
    del calls[:]
    with pytest.raises(RuntimeError):
        demo.main(['--model', 'pspnet_resnet50', '--pretrained-model',
                   weights, '--input-size', str(SIZE), '--output', 'out',
                   'images'])
    assert sorted(os.listdir(str(tmp_path / 'out'))) == ['im0_label.png']
    assert (tmp_path / 'out' / 'im0_label.png').read_bytes() != b'from before'


@pytest.mark.parametrize('kind', ['label', 'color', 'overlay', 'figure'])
def test_full_disk_says_so_and_leaves_nothing(weights, tmp_path,
                                              monkeypatch, capsys, kind):
    write_rgb(tmp_path / 'a.png', 30, 40)
    write_atomic = atomic.write_atomic

    def full_disk(path, write):
        if path.endswith('_{}.png'.format(kind)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_atomic(path, write)

    monkeypatch.setattr(atomic, 'write_atomic', full_disk)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        demo.main(['--model', 'pspnet_resnet50', '--pretrained-model',
                   weights, '--input-size', str(SIZE), '--output',
                   'new/a', 'a.png'])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: cannot write new/a_{}.png: {}; free some space on '
                   'its disk'.format(kind, os.strerror(errno.ENOSPC))]
    assert sorted(os.listdir(str(tmp_path))) == ['a.png']
