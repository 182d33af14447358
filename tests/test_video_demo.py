"""demo.py on videos, progress bars in pipes, and what demo refuses before
the model loads: generated clips, small random weights."""

import errno
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
from pspnet.apps import demo as demo_app
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


def write_y4m(path, frames, rate='10:1'):
    """A YUV4MPEG2 clip (4:4:4, ``rate`` frames per second as a ratio) of
    (H, W, 3) uint8 BGR frames: any size, odd or 1 pixel, which OpenCV's
    writers cannot all make."""
    H, W = frames[0].shape[:2]
    with open(str(path), 'wb') as f:
        f.write('YUV4MPEG2 W{} H{} F{} Ip A1:1 C444\n'.format(W, H, rate)
                .encode('ascii'))
        for frame in frames:
            ycrcb = cv2.cvtColor(frame, cv2.COLOR_BGR2YCrCb)
            f.write(b'FRAME\n')
            for channel in (0, 2, 1):  # Y, Cb, Cr
                f.write(np.ascontiguousarray(ycrcb[:, :, channel]).tobytes())


def blocky_frames(rng, n, size):
    """Frames of random blocks of 2 to 5 pixels, sharp edges everywhere:
    a frame shifted by one pixel differs from itself on every edge."""
    W, H = size
    frames = []
    for _ in range(n):
        block = int(rng.randint(2, 6))
        small = rng.randint(0, 256, (H // block + 1, W // block + 1, 3),
                            np.uint8)
        frames.append(cv2.resize(small, (W, H),
                                 interpolation=cv2.INTER_NEAREST))
    return frames


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
    monkeypatch.setattr(demo_app, 'load_model', lambda args: model)
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


@pytest.mark.parametrize('path', ['fast', 'plain', 'export'])
def test_memory_too_small_for_any_input_size(path, monkeypatch):
    rng = np.random.RandomState(len(path))
    monkeypatch.setattr(memory, '_resident_bytes', lambda: 0)
    for depth in (50, 101):
        # Memory below what the smallest input size needs.
        smallest = memory.estimate_bytes(depth, 48, path=path)
        limit = rng.uniform(0.1, 0.99) * smallest
        monkeypatch.setattr(memory, 'available_bytes',
                            lambda: limit / memory.USABLE_FRACTION)
        with pytest.raises(memory.UserError, match='not even the smallest, 48, '
                           'fits: close other programs') as e:
            memory.check_input_size(depth, int(rng.randint(48, 1000)),
                                    path=path)
        assert 'at most' not in str(e.value)


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


def padded(frame):
    """``frame`` with a copy of its last column and row where its width and
    height are odd: what the written videos hold."""
    H, W = frame.shape[:2]
    return np.pad(frame, ((0, H % 2), (0, W % 2), (0, 0)), mode='edge')


def mean_difference(a, b, dy=0, dx=0):
    """Mean absolute difference of ``a`` shifted by (dy, dx) and ``b``,
    over their overlap."""
    H, W = a.shape[:2]
    a = a[max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)]
    b = b[max(-dy, 0):H + min(-dy, 0), max(-dx, 0):W + min(-dx, 0)]
    return np.abs(a.astype(float) - b.astype(float)).mean()


def random_sizes(rng):
    """(W, H) of every parity, one side sometimes 1 or 2 pixels."""
    sizes = []
    for odd_w, odd_h in ((1, 1), (1, 0), (0, 1), (0, 0)):
        W = int(rng.randint(6, 40)) * 2 + odd_w
        H = int(rng.randint(6, 40)) * 2 + odd_h
        sizes.append((W, H))
    tiny = [int(rng.randint(1, 3)), int(rng.randint(1, 60))]
    rng.shuffle(tiny)
    sizes.append(tuple(tiny))
    return sizes


@pytest.mark.parametrize('seed', [0, 1])
def test_videos_line_up_with_the_frame_labels(model, tmp_path, seed):
    # Any width and height, odd ones included: the videos hold every
    # frame, pixel (x, y) of each being pixel (x, y) of its label PNG (odd
    # sides padded by a copy of the last column or row).
    rng = np.random.RandomState(seed)
    shifts_told = 0
    for W, H in random_sizes(rng):
        n = int(rng.randint(1, 3))
        inputs = blocky_frames(rng, n, (W, H))
        name = 'in_{}x{}'.format(W, H)
        write_y4m(tmp_path / (name + '.y4m'), inputs)
        result = video.segment_video(
            model, str(tmp_path / (name + '.y4m')), str(tmp_path / 'o' / name),
            COLORS, mask=True, frame_labels=True, file=io.StringIO())
        written = (W + W % 2, H + H % 2)
        assert result['size'] == (W, H) and result['frames'] == n
        assert result['written_size'] == written
        labels_dir = tmp_path / 'o' / (name + '_labels')
        names = sorted(os.listdir(str(labels_dir)))
        assert names == ['{:06d}.png'.format(i) for i in range(n)]
        decoded, _, _ = read_clip(tmp_path / (name + '.y4m'))
        overlays, fps, count = read_clip(result['paths']['overlay'])
        colors, _, count2 = read_clip(result['paths']['color'])
        assert len(overlays) == len(colors) == count == count2 == n
        assert fps == 10
        for frame, overlay, color, label_name in zip(decoded, overlays,
                                                     colors, names):
            label = cv2.imread(str(labels_dir / label_name),
                               cv2.IMREAD_UNCHANGED)
            assert label.shape == (H, W)
            assert overlay.shape == color.shape == (written[1], written[0], 3)
            want_overlay = padded(video.image_to_frame(
                visualizations.overlay_label(video.frame_to_image(frame),
                                             label, COLORS)))
            want_color = padded(video.image_to_frame(
                visualizations.colorize_label(label, COLORS)))
            for got, want in ((overlay, want_overlay), (color, want_color)):
                # mp4v is lossy (its colour at half resolution: compare
                # brightness), but closer in place than shifted by a pixel
                # (where the picture has edges to tell).
                got = cv2.cvtColor(got, cv2.COLOR_BGR2GRAY)
                want = cv2.cvtColor(want, cv2.COLOR_BGR2GRAY)
                here = mean_difference(got, want)
                assert here < 8, (W, H, here)
                for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                    if mean_difference(want, want, dy, dx) > 2 * here:
                        shifts_told += 1
                        assert here < mean_difference(got, want, dy, dx)
    # The blocky frames gave every overlay of 8 pixels and more edges.
    assert shifts_told >= 4 * 4
    assert no_temporaries(tmp_path)


def test_written_size_and_padding():
    rng = np.random.RandomState(0)
    for _ in range(20):
        W, H = (int(v) for v in rng.randint(1, 50, 2))
        frame = rng.randint(0, 256, (H, W, 3), np.uint8)
        out = video.pad_frame(frame)
        assert (out.shape[1], out.shape[0]) == video.written_size((W, H))
        assert out.shape[0] % 2 == 0 and out.shape[1] % 2 == 0
        np.testing.assert_array_equal(out, padded(frame))


@pytest.mark.parametrize('size', [(video.MAX_SIDE + 1, 2),
                                  (3, video.MAX_SIDE + 1),
                                  (video.MAX_SIDE + 2, 5)])
def test_too_large_video_refused_before_model_load(tmp_path, monkeypatch,
                                                   capsys, size):
    W, H = size
    write_y4m(tmp_path / 'big.y4m', [np.zeros((H, W, 3), np.uint8)])
    monkeypatch.setattr(models, 'build_model', _no_model)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        demo.main(['--video-mask', '--output', 'out/big', 'big.y4m'])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith('error: cannot write out/big_overlay.mp4: the '
                             'frames are {}x{}'.format(W, H))
    assert 'at most {} pixels a side'.format(video.MAX_SIDE) in err[0]
    assert sorted(os.listdir(str(tmp_path))) == ['big.y4m']


def test_largest_sides_the_writer_takes():
    # The limit is the encoder's: the largest side opens, one more not.
    for W, H in ((video.MAX_SIDE, 2), (2, video.MAX_SIDE),
                 (video.MAX_SIDE - 1, 1)):
        video.check_writer('x.mp4', (W, H))
    assert not video._writer_opens((video.MAX_SIDE + 2, 2))
    assert not video._writer_opens((2, video.MAX_SIDE + 2))


@pytest.mark.parametrize('case', ['no encoder', 'size refused',
                                  'frame rate refused'])
def test_writer_refusal_names_the_target_and_the_cause(model, tmp_path,
                                                       monkeypatch, case):
    write_clip(tmp_path / 'clip.avi', 2, (40, 32), 10, fourcc='MJPG')
    opens = video._writer_opens
    if case == 'no encoder':
        monkeypatch.setattr(video, '_writer_opens', lambda *a, **k: False)
        expected = 'OpenCV\'s FFmpeg has no mp4v encoder'
    elif case == 'size refused':
        monkeypatch.setattr(video, '_writer_opens', lambda size, fps=25.0:
                            size == (64, 64) and opens(size, fps))
        expected = 'refuses frames of 40x32'
    else:
        monkeypatch.setattr(video, '_writer_opens', lambda size, fps=25.0:
                            fps != 10 and opens(size, fps))
        expected = 'refuses the frame rate of the video, 10 fps'
    with pytest.raises(video.UserError) as e:
        video.segment_video(model, str(tmp_path / 'clip.avi'),
                            str(tmp_path / 'o' / 'clip'), COLORS, mask=True,
                            file=io.StringIO())
    message = str(e.value)
    assert message.startswith('cannot write {}: '.format(
        tmp_path / 'o' / 'clip_overlay.mp4'))
    assert expected in message and atomic.TEMP_PREFIX not in message
    assert sorted(os.listdir(str(tmp_path))) == ['clip.avi']


def _limit_file_size(limit):
    def preexec():
        import resource
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_video_the_disk_cannot_hold_is_an_error(weights, tmp_path):
    # OpenCV's writer reports no error when the disk is full (here: a file
    # size limit); the file it leaves has no index. Read back, it is an
    # error naming the target, and nothing is left.
    rng = np.random.RandomState(4)
    frames = [rng.randint(0, 256, (48, 64, 3), np.uint8) for _ in range(3)]
    write_y4m(tmp_path / 'noise.y4m', frames)
    # Three frames of noise take about 8 kB of mp4v.
    limit = 4000
    env = dict(os.environ, MPLBACKEND='Agg')
    result = subprocess.run(
        [sys.executable, DEMO, '--model', 'pspnet_resnet50',
         '--pretrained-model', weights, '--input-size', str(SIZE),
         '--output', 'out/noise', 'noise.y4m'],
        cwd=str(tmp_path), env=env, capture_output=True, text=True,
        timeout=300, preexec_fn=_limit_file_size(limit))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert 'Traceback' not in result.stderr
    assert lines[-1].startswith('error: could not write out/noise_overlay.mp4'
                                ': the file OpenCV wrote'), lines[-1]
    assert 'nothing was written' in lines[-1]
    assert sorted(os.listdir(str(tmp_path))) == ['noise.y4m']


def _foreign_entries(folder, case):
    """Put something demo did not write into a frame-label folder."""
    (folder / '000000.png').write_bytes(b'an earlier frame')
    if case == 'a note':
        (folder / 'notes.txt').write_text('mine')
    elif case == 'another png':
        (folder / 'mask.png').write_bytes(b'mine')
    elif case == 'a subfolder':
        (folder / '000001.png').mkdir()
    elif case == 'a hidden file':
        (folder / '.keep').write_text('')
    elif case == 'a link':
        (folder / '000002.png').symlink_to(folder / '000000.png')


@pytest.mark.parametrize('case', ['a note', 'another png', 'a subfolder',
                                  'a hidden file', 'a link',
                                  'the folder a link'])
def test_frame_label_folder_of_the_users_refused_before_model_load(
        tmp_path, monkeypatch, capsys, case):
    write_clip(tmp_path / 'clip.avi', 2, (32, 24), 10, fourcc='MJPG')
    labels = tmp_path / 'o' / 'clip_labels'
    if case == 'the folder a link':
        (tmp_path / 'mine').mkdir()
        (tmp_path / 'mine' / '000000.png').write_bytes(b'x')
        (tmp_path / 'o').mkdir()
        labels.symlink_to(tmp_path / 'mine')
    else:
        labels.mkdir(parents=True)
        _foreign_entries(labels, case)
    before = sorted(str(p.relative_to(tmp_path))
                    for p in tmp_path.rglob('*'))
    monkeypatch.setattr(models, 'build_model', _no_model)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        demo.main(['--frame-labels', '--output', 'o/clip', 'clip.avi'])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: o/clip_labels '), err
    assert 'pass another --output' in err[0]
    assert sorted(str(p.relative_to(tmp_path))
                  for p in tmp_path.rglob('*')) == before


def test_segment_video_refuses_a_folder_of_the_users(model, tmp_path):
    # The library function too, not only demo's check.
    write_clip(tmp_path / 'clip.avi', 1, (32, 24), 10, fourcc='MJPG')
    labels = tmp_path / 'clip_labels'
    labels.mkdir()
    _foreign_entries(labels, 'a note')
    with pytest.raises(video.UserError, match='holds an entry that demo did '
                       'not write'):
        video.segment_video(model, str(tmp_path / 'clip.avi'),
                            str(tmp_path / 'clip'), COLORS,
                            frame_labels=True, file=io.StringIO())
    assert sorted(os.listdir(str(labels))) == ['000000.png', 'notes.txt']
    assert sorted(os.listdir(str(tmp_path))) == ['clip.avi', 'clip_labels']


def test_frame_labels_of_an_earlier_run_are_replaced(model, tmp_path,
                                                     monkeypatch, capsys):
    rng = np.random.RandomState(7)
    earlier = int(rng.randint(3, 12))
    labels = tmp_path / 'o' / 'clip_labels'
    labels.mkdir(parents=True)
    for i in range(earlier):
        (labels / '{:06d}.png'.format(i)).write_bytes(b'old')
    write_clip(tmp_path / 'clip.avi', 2, (32, 24), 10, fourcc='MJPG')
    monkeypatch.setattr(demo_app, 'load_model', lambda args: model)
    monkeypatch.chdir(tmp_path)
    demo.main(['--frame-labels', '--output', 'o/clip', 'clip.avi'])
    out = capsys.readouterr().out
    assert 'o/clip_labels (replacing the {} frame labels of an earlier run)'\
        .format(earlier) in out
    assert sorted(os.listdir(str(labels))) == ['000000.png', '000001.png']
    for name in os.listdir(str(labels)):
        label = cv2.imread(str(labels / name), cv2.IMREAD_UNCHANGED)
        assert label.shape == (24, 32)
    # A second run: replacing its own 2.
    demo.main(['--frame-labels', '--output', 'o/clip', 'clip.avi'])
    assert 'replacing the 2 frame labels' in capsys.readouterr().out
    assert no_temporaries(tmp_path)


def test_video_line_tells_the_written_size():
    base = {'paths': video.output_paths('o/c', True, True), 'frames': 3,
            'skipped': [], 'fps': 10.0, 'replaced_labels': None}
    for size, padded in (((40, 30), None), ((41, 30), 'column is'),
                         ((40, 31), 'row is'),
                         ((41, 31), 'column and row are')):
        line = demo_app.video_line(dict(base, size=size,
                                    written_size=video.written_size(size)))
        assert line.startswith('wrote o/c_overlay.mp4, o/c_color.mp4, '
                               'o/c_labels (3 frames, {}x{}, 10 fps'
                               .format(*size)), line
        if padded:
            assert 'the videos are {}x{}'.format(
                *video.written_size(size)) in line
            assert 'the last {} repeated'.format(padded) in line
        else:
            assert 'videos are' not in line


def test_frame_label_that_cannot_be_written_names_its_place(model, tmp_path,
                                                            monkeypatch):
    write_clip(tmp_path / 'clip.avi', 3, (32, 24), 10, fourcc='MJPG')
    write_atomic = atomic.write_atomic
    calls = []

    def full_disk(path, write):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_atomic(path, write)

    monkeypatch.setattr(atomic, 'write_atomic', full_disk)
    with pytest.raises(video.UserError) as e:
        video.segment_video(model, str(tmp_path / 'clip.avi'),
                            str(tmp_path / 'clip'), COLORS,
                            frame_labels=True, file=io.StringIO())
    assert str(e.value) == (
        'cannot write {}: {}; free some space on its disk'.format(
            tmp_path / 'clip_labels' / '000001.png',
            os.strerror(errno.ENOSPC)))
    assert sorted(os.listdir(str(tmp_path))) == ['clip.avi']


def test_video_that_may_not_be_read_says_so(tmp_path, monkeypatch):
    # (As root every file may be read: the refusal is simulated.)
    write_clip(tmp_path / 'clip.avi', 1, (16, 16), 5, fourcc='MJPG')

    def denied(path, mode='r'):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(video, 'open', denied, raising=False)
    with pytest.raises(video.UserError, match='cannot read video .*clip.avi: '
                       'Permission denied; check its permissions'):
        video.open_video(str(tmp_path / 'clip.avi'))


def test_frame_of_another_size_is_named_so(model, tmp_path, monkeypatch):
    write_clip(tmp_path / 'clip.avi', 3, (32, 24), 10, fourcc='MJPG')
    frames = video.frames

    def resized(capture, n_frames=None):
        for index, frame, why in frames(capture, n_frames):
            if index == 1:
                frame = cv2.resize(frame, (16, 12))
            yield index, frame, why

    monkeypatch.setattr(video, 'frames', resized)
    stream = io.StringIO()
    result = video.segment_video(model, str(tmp_path / 'clip.avi'),
                                 str(tmp_path / 'clip'), COLORS, file=stream)
    assert result['skipped'] == [1] and result['frames'] == 2
    assert 'skipped: frame 1 of {} is 16x12, not the video\'s 32x24'.format(
        tmp_path / 'clip.avi') in stream.getvalue()


def test_frame_rate_the_writer_refuses_before_model_load(tmp_path,
                                                         monkeypatch, capsys):
    # 99999/100 fps: OpenCV's mp4v writer does not open (measured with
    # opencv-python-headless 4.10; 999.9 and 1001 it takes).
    write_y4m(tmp_path / 'fast.y4m', [np.zeros((16, 16, 3), np.uint8)],
              rate='99999:100')
    monkeypatch.setattr(models, 'build_model', _no_model)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        demo.main(['fast.y4m'])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: cannot write {}: OpenCV\'s mp4v writer refuses the '
                   'frame rate of the video, 999.99 fps; convert the video to '
                   'a usual frame rate (such as 25 or 30) and pass that'
                   .format(os.path.join('result', 'fast_overlay.mp4'))]
    assert sorted(os.listdir(str(tmp_path))) == ['fast.y4m']
