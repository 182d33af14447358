"""demo.py on videos, progress bars in pipes, and what demo refuses before
the model loads: generated clips, small random weights."""

import io
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

import demo
from pspnet import atomic
from pspnet import memory
from pspnet import models
from pspnet import prediction
from pspnet import progress
from pspnet import video
from pspnet import visualizations
from tests.helpers.random_weights import save_random_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, 'demo.py')
N_CLASS = 19
SIZE = 64
COLORS = visualizations.label_names_and_colors(N_CLASS)[1]
ESCAPES = re.compile(r'[\x1b\r]')


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    return save_random_weights(
        tmp_path_factory.mktemp('weights') / 'pspnet19.npz', N_CLASS, SIZE)


@pytest.fixture(scope='module')
def model(weights):
    return models.build_model('pspnet_resnet50', None, weights, SIZE)


def write_clip(path, n_frames, size, fps, fourcc='mp4v', seed=0):
    """A clip of smooth random frames (so that the labels vary)."""
    rng = np.random.RandomState(seed)
    W, H = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc),
                             fps, (W, H))
    assert writer.isOpened()
    for _ in range(n_frames):
        frame = rng.randint(0, 256, (H // 4 + 1, W // 4 + 1, 3), np.uint8)
        writer.write(cv2.resize(frame, (W, H)))
    writer.release()


def read_clip(path):
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    fps = capture.get(cv2.CAP_PROP_FPS)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps, count


def run_demo(*args, cwd, env=None):
    env = dict(os.environ, MPLBACKEND='Agg', **(env or {}))
    return subprocess.run(
        [sys.executable, DEMO, '--model', 'pspnet_resnet50'] + list(args),
        cwd=str(cwd), env=env, capture_output=True, text=True, timeout=300)


def no_temporaries(folder):
    return not [name for _, dirs, files in os.walk(str(folder))
                for name in dirs + files
                if name.startswith(atomic.TEMP_PREFIX)]


def test_video_through_the_demo_in_a_pipe(weights, tmp_path):
    write_clip(tmp_path / 'clip.mp4', 5, (56, 40), 12)
    result = run_demo('--pretrained-model', weights, '--input-size',
                      str(SIZE), '--video-mask', '--frame-labels',
                      '--output', 'out/clip', 'clip.mp4', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'out/clip_overlay.mp4' in result.stdout
    # The bar went to a pipe: plain lines, no escape codes, the last 5/5.
    assert not ESCAPES.search(result.stderr), repr(result.stderr)
    assert '5/5' in result.stderr.strip().splitlines()[-1]
    assert 'frame' in result.stderr
    labels = sorted(os.listdir(str(tmp_path / 'out' / 'clip_labels')))
    assert labels == ['{:06d}.png'.format(i) for i in range(5)]
    colors, fps, count = read_clip(tmp_path / 'out' / 'clip_color.mp4')
    overlays, fps2, count2 = read_clip(tmp_path / 'out' / 'clip_overlay.mp4')
    assert len(colors) == len(overlays) == count == count2 == 5
    assert fps == fps2 == 12
    for name, color in zip(labels, colors):
        label = cv2.imread(str(tmp_path / 'out' / 'clip_labels' / name),
                           cv2.IMREAD_UNCHANGED)
        assert label.shape == (40, 56) and label.max() < N_CLASS
        assert color.shape == (40, 56, 3)
        expected = visualizations.colorize_label(label, COLORS)
        # mp4v is lossy: the decoded mask is near the label colours.
        diff = np.abs(color[:, :, ::-1].astype(int) -
                      expected.transpose(1, 2, 0).astype(int))
        assert np.median(diff) < 12
    assert no_temporaries(tmp_path)


@pytest.mark.parametrize('seed', [1, 2])
def test_video_of_random_size_and_rate(model, tmp_path, seed):
    rng = np.random.RandomState(seed)
    size = (int(rng.randint(8, 40)) * 2, int(rng.randint(8, 40)) * 2)
    fps = float(rng.choice([5, 10, 15, 24, 30]))
    n = int(rng.randint(1, 5))
    write_clip(tmp_path / 'in.avi', n, size, fps, fourcc='MJPG', seed=seed)
    stream = io.StringIO()
    result = video.segment_video(model, str(tmp_path / 'in.avi'),
                                 str(tmp_path / 'o' / 'in'), COLORS,
                                 file=stream)
    assert result['frames'] == n and result['skipped'] == []
    frames, got_fps, _ = read_clip(result['paths']['overlay'])
    assert len(frames) == n and got_fps == fps
    assert frames[0].shape == (size[1], size[0], 3)
    assert not ESCAPES.search(stream.getvalue())
    assert '{0}/{0}'.format(n) in stream.getvalue()


def test_corrupt_and_missing_frames_are_skipped(weights, tmp_path):
    write_clip(tmp_path / 'good.avi', 10, (48, 40), 10, fourcc='MJPG')
    data = bytearray((tmp_path / 'good.avi').read_bytes())
    # Cut to 60 %: the AVI header still announces 10 frames.
    (tmp_path / 'cut.avi').write_bytes(bytes(data[:len(data) * 6 // 10]))
    result = run_demo('--pretrained-model', weights, '--input-size',
                      str(SIZE), '--output', 'out/', 'cut.avi', cwd=tmp_path)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith('error: ')
    assert 'could not be decoded' in lines[-1]
    skipped = [line for line in lines if line.startswith('skipped: frame')]
    frames, _, _ = read_clip(tmp_path / 'out' / 'cut_overlay.mp4')
    assert 0 < len(frames) < 10
    assert len(skipped) == 10 - len(frames)
    assert no_temporaries(tmp_path)


def test_unopenable_video_is_one_line(weights, tmp_path):
    (tmp_path / 'broken.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42' * 10)
    result = run_demo('--pretrained-model', weights, 'broken.mp4',
                      cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'cannot read video broken.mp4' in lines[0]
    assert not (tmp_path / 'result').exists()


def test_failed_video_run_leaves_nothing(model, tmp_path, monkeypatch):
    write_clip(tmp_path / 'clip.avi', 4, (40, 32), 10, fourcc='MJPG')
    calls = []
    overlay = visualizations.overlay_label

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError('boom')
        return overlay(*args, **kwargs)

    monkeypatch.setattr(visualizations, 'overlay_label', failing)
    monkeypatch.setattr(demo, 'load_model', lambda args: model)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError):
        demo.main(['--frame-labels', '--video-mask', '--output',
                   'new/deeper/clip', 'clip.avi'])
    assert sorted(os.listdir(str(tmp_path))) == ['clip.avi']


def test_single_image_window_progress(model, tmp_path, monkeypatch, capsys):
    img = np.random.RandomState(3).randint(0, 256, (60, 140, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'wide.png'), img)
    monkeypatch.setattr(progress, 'WORK_DELAY', 0)
    # The real load_model (it applies --scales) on the tests' model.
    monkeypatch.setattr(model, 'scales', model.scales)
    monkeypatch.setattr(model, 'flip', model.flip)
    monkeypatch.setattr(models, 'build_model', lambda *a, **k: model)
    monkeypatch.chdir(tmp_path)
    demo.main(['--scales', '0.5,1.0', 'wide.png'])
    err = capsys.readouterr().err
    total = prediction.network_calls((60, 140), (SIZE, SIZE), (0.5, 1.0))
    assert total > 2
    assert '{0}/{0}'.format(total) in err and 'window' in err
    assert not ESCAPES.search(err)


def test_demo_flags_reach_the_model(weights, tmp_path, monkeypatch):
    seen = {}
    build = models.build_model

    def spy(*args, **kwargs):
        link = build(*args, **kwargs)
        seen['model'] = link
        return link

    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((20, 30, 3), np.uint8))
    monkeypatch.setattr(models, 'build_model', spy)
    monkeypatch.chdir(tmp_path)
    demo.main(['--model', 'pspnet_resnet50', '--pretrained-model', weights,
               '--input-size', str(SIZE), '--no-flip', '--scales', '0.75,1',
               'a.png'])
    assert seen['model'].flip is False
    assert seen['model'].scales == (0.75, 1.0)


def test_progress_in_a_pipe_has_no_escape_codes(monkeypatch):
    monkeypatch.setattr(progress, 'PIPE_INTERVAL', 0)
    stream = io.StringIO()
    bar = progress.bar(total=7, unit='frame', desc='x', file=stream)
    for i in range(7):
        bar.update(1)
        if i == 3:
            progress.write('a message', file=stream)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert 'a message' in lines
    assert '7/7' in lines[-1]
    assert len(lines) >= 4
    assert not ESCAPES.search(stream.getvalue())


def test_input_size_too_large_is_refused(tmp_path):
    # Before anything is read or loaded: the image does not even exist.
    result = run_demo('--input-size', '100000', 'nope.jpg', cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.match(r'error: --input-size 100000 needs about [\d.]+ TB .* '
                    r'use at most --input-size \d+', lines[0]), lines[0]


@pytest.mark.parametrize('depth', [50, 101])
@pytest.mark.parametrize('fast', [True, False])
def test_largest_input_size_is_the_limit(monkeypatch, depth, fast):
    rng = np.random.RandomState(depth + fast)
    for limit in rng.uniform(1e9, 1e12, 5):
        monkeypatch.setattr(memory, 'available_bytes', lambda: limit)
        monkeypatch.setattr(memory, '_resident_bytes', lambda: 0)
        usable = limit * memory.USABLE_FRACTION
        largest = memory.largest_input_size(depth, usable, fast)
        assert memory.estimate_bytes(depth, largest, fast) <= usable
        memory.check_input_size(depth, largest, fast=fast)
        with pytest.raises(memory.UserError, match='at most --input-size {}'
                           .format(largest)):
            memory.check_input_size(depth, largest + 1, fast=fast)


def test_estimates_grow_with_input_size():
    sizes = [97, 473, 713, 2000]
    for depth in (50, 101):
        fast = [memory.estimate_bytes(depth, s, True) for s in sizes]
        plain = [memory.estimate_bytes(depth, s, False) for s in sizes]
        assert fast == sorted(fast) and plain == sorted(plain)
        assert all(f < p for f, p in zip(fast[1:], plain[1:]))


def _no_model(*args, **kwargs):
    raise AssertionError('the model was loaded before the outputs were '
                         'checked')


@pytest.mark.parametrize('case', ['under a file', 'folder as output',
                                  'labels folder is a file'])
def test_unwritable_output_refused_before_model_load(tmp_path, monkeypatch,
                                                     capsys, case):
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((20, 30, 3), np.uint8))
    write_clip(tmp_path / 'clip.avi', 1, (16, 16), 5, fourcc='MJPG')
    (tmp_path / 'afile').write_text('x')
    args = {
        'under a file': ['--output', 'afile/x', 'a.png'],
        'folder as output': ['--output', 'o/a', 'a.png'],
        'labels folder is a file': ['--frame-labels', '--output', 'o/clip',
                                    'clip.avi'],
    }[case]
    (tmp_path / 'o').mkdir()
    (tmp_path / 'o' / 'a_overlay.png').mkdir()
    (tmp_path / 'o' / 'clip_labels').write_text('x')
    monkeypatch.setattr(models, 'build_model', _no_model)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        demo.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ')


def test_camera_refused_without_display(tmp_path):
    env = {'DISPLAY': '', 'WAYLAND_DISPLAY': ''}
    result = run_demo('--camera', '0', cwd=tmp_path, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and '--camera' in lines[0], result.stderr
    result = run_demo('--camera', '0', 'a.png', cwd=tmp_path)
    assert result.returncode == 2
    assert 'takes no IMAGE' in result.stderr


def test_frames_tells_a_corrupt_frame_in_the_middle(tmp_path):
    write_clip(tmp_path / 'good.avi', 10, (48, 40), 10, fourcc='MJPG')
    data = bytearray((tmp_path / 'good.avi').read_bytes())
    # Each frame is a JPEG: blank the data of the fifth (before the next
    # frame's chunk header) so that nothing in it decodes.
    starts = [m.start() for m in re.finditer(b'\xff\xd8', bytes(data))]
    assert len(starts) == 10
    data[starts[4]:starts[5] - 8] = bytes(starts[5] - 8 - starts[4])
    (tmp_path / 'bad.avi').write_bytes(bytes(data))
    capture, _, _, n = video.open_video(str(tmp_path / 'bad.avi'))
    got = list(video.frames(capture, n))
    capture.release()
    assert [i for i, _, _ in got] == list(range(10))
    assert [i for i, frame, _ in got if frame is None] == [4]
    assert 'JPEG' in got[4][2]


def test_image_whose_scores_cannot_fit_is_refused(model, tmp_path,
                                                  monkeypatch, capsys):
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((40, 50, 3), np.uint8))
    need = memory.image_bytes((40, 50), N_CLASS)
    assert need > 40 * 50 * N_CLASS * 4
    monkeypatch.setattr(memory, 'available_bytes', lambda: need)
    monkeypatch.setattr(models, 'build_model', lambda *a, **k: model)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        demo.main(['a.png'])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'image a.png (50x40) needs about' in err[0]
    assert not (tmp_path / 'result').exists()
    # With room it runs.
    monkeypatch.setattr(memory, 'available_bytes', lambda: 2 * need)
    demo.main(['a.png'])
    assert (tmp_path / 'result' / 'a_label.png').exists()
