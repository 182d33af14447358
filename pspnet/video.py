"""Segmenting videos frame by frame, and a camera live (OpenCV).

A video is read with ``cv2.VideoCapture`` (anything OpenCV's FFmpeg
reads) and written with ``cv2.VideoWriter`` as MPEG-4 part 2 (``mp4v``)
in an ``.mp4`` file of the same frame rate and, for even widths and
heights, the same frame size. OpenCV's FFmpeg writer takes only even
sizes (for any codec it drops the last column or row of an odd size), so
a frame of odd width or height is written padded by one column or row,
a copy of its last (:func:`written_size`): pixel (x, y) of a written frame
is always pixel (x, y) of the input frame and of its label PNG. Written
files are read back: one that does not hold every frame (a full disk) is
an error. Outputs appear only once complete (:mod:`pspnet.atomic`): an
interrupted or failed run leaves nothing. Frames OpenCV cannot decode are
skipped and counted.

Frames are (3, H, W) float32 RGB arrays in [0, 255], as images everywhere
in this package; OpenCV's are (H, W, 3) uint8 BGR.
"""

import math
import os
import re
import sys
import tempfile
import time

import cv2
import numpy as np

from pspnet import atomic
from pspnet import image_io
from pspnet import memory
from pspnet import progress
from pspnet import visualizations
from pspnet.errors import UserError

#: File name extensions taken for videos (any case). Other files are
#: taken for images.
VIDEO_EXTENSIONS = ('.mp4', '.m4v', '.mov', '.avi', '.mkv', '.webm', '.mpg',
                    '.mpeg', '.wmv', '.flv', '.3gp', '.ts', '.mts', '.m2ts',
                    '.ogv', '.mjpeg', '.y4m')

#: Frame rate written when a video does not tell its own.
DEFAULT_FPS = 25.0

#: Reads that may fail in a row before the video is taken to end there.
MAX_FAILED_READS = 10

#: FourCC of the written videos.
FOURCC = 'mp4v'

#: Largest side of a frame the ``mp4v`` encoder takes (MPEG-4 part 2
#: codes sides in 13 bits; FFmpeg refuses 8191 and above, measured with
#: opencv-python-headless 4.10). Odd sides are padded to even first.
MAX_SIDE = 8190

#: Names of the files a frame-label folder holds (``000000.png``, ...).
FRAME_LABEL_NAME = re.compile(r'^\d{6,}\.png$')


def is_video(path):
    """Whether ``path`` is taken for a video (by its extension)."""
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def output_paths(prefix, mask=False, frame_labels=False):
    """What :func:`segment_video` writes for ``prefix``: ``overlay`` (the
    colours over the frames, ``PREFIX_overlay.mp4``), ``color`` (the colour
    mask, ``PREFIX_color.mp4``) with ``mask``, ``labels`` (a folder of one
    label PNG per frame, ``PREFIX_labels/000000.png``, ...) with
    ``frame_labels``."""
    paths = {'overlay': prefix + '_overlay.mp4'}
    if mask:
        paths['color'] = prefix + '_color.mp4'
    if frame_labels:
        paths['labels'] = prefix + '_labels'
    return paths


def frame_to_image(frame):
    """(H, W, 3) uint8 BGR (or (H, W) gray) OpenCV frame -> (3, H, W)
    float32 RGB in [0, 255]."""
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    return np.ascontiguousarray(frame[:, :, 2::-1].transpose(2, 0, 1),
                                dtype=np.float32)


def image_to_frame(img):
    """(3, H, W) uint8 RGB -> (H, W, 3) uint8 BGR for OpenCV."""
    return np.ascontiguousarray(img.transpose(1, 2, 0)[:, :, ::-1])


def open_video(path):
    """Open a video file.

    Returns:
        tuple: ``(capture, fps, (W, H), n_frames)``: the open
        ``cv2.VideoCapture``, the frame rate (:data:`DEFAULT_FPS` if the
        file has none), the frame size and the number of frames the file
        announces (None if it does not).

    Raises:
        UserError: Missing, a folder, or nothing OpenCV can decode.
    """
    if os.path.isdir(path):
        raise UserError('cannot read video {}: it is a folder; pass a video '
                        'file'.format(path))
    if not os.path.exists(path):
        raise UserError('video {} does not exist; check the path'
                        .format(path))
    try:
        # OpenCV says only that it cannot open a file it may not read.
        with open(path, 'rb') as f:
            f.read(1)
    except OSError as e:
        raise UserError('cannot read video {}: {}; check its permissions'
                        .format(path, e.strerror or e))
    with image_io.stderr_captured() as messages:
        capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        why = _reason(''.join(messages))
        raise UserError('cannot read video {}: OpenCV cannot open it{} (not '
                        'a video, truncated, corrupt, or a codec its FFmpeg '
                        'lacks); pass another file'.format(
                            path, ' ({})'.format(why) if why else ''))
    W = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    H = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not (math.isfinite(fps) and 0 < fps < 1000):
        fps = DEFAULT_FPS
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    n_frames = int(count) if math.isfinite(count) and count >= 1 else None
    if W < 1 or H < 1:
        capture.release()
        raise UserError('cannot read video {}: it has no frames OpenCV can '
                        'decode; pass another file'.format(path))
    return capture, fps, (W, H), n_frames


def _read(capture):
    """One frame, and what FFmpeg printed reading it (its own messages on
    file descriptor 2, kept out of the terminal)."""
    with image_io.stderr_captured() as messages:
        ok, frame = capture.read()
    if not ok or frame is None or not frame.size:
        frame = None
    return frame, ''.join(messages).strip()


def _reason(messages):
    lines = [line.split('] ', 1)[-1] for line in messages.splitlines()
             if line.strip()]
    return lines[-1] if lines else None


def frames(capture, n_frames=None, max_failed=MAX_FAILED_READS):
    """The frames of an open capture, telling the ones that fail.

    A failed read in the middle of a video (the next ones succeed) is a
    frame that could not be decoded; failed reads to the end, before the
    announced number of frames, are frames missing from a truncated file.

    Yields:
        tuple: ``(index, frame, why)``: the frame's index in the video, its
        (H, W, 3) uint8 BGR array or None for a frame that could not be
        decoded (each frame missing at the end too), and then why, if the
        decoder said (else None).
    """
    index = 0
    failed = []
    while True:
        frame, messages = _read(capture)
        if frame is not None:
            for i, why in failed:
                yield i, None, why
            failed = []
            yield index, frame, None
            index += 1
            continue
        if len(failed) >= max_failed:
            break
        failed.append((index, _reason(messages)))
        index += 1
    index -= len(failed)  # trailing failures were the end of the stream
    if n_frames is not None:
        for i in range(index, n_frames):
            yield i, None, 'the file ends before it: truncated'


def written_size(size):
    """The frame size written for frames of ``size`` (W, H): each odd side
    one larger (OpenCV's FFmpeg writer takes only even sizes)."""
    W, H = size
    return W + W % 2, H + H % 2


def pad_frame(frame):
    """An (H, W, 3) frame padded to :func:`written_size` by a copy of its
    last column and row."""
    H, W = frame.shape[:2]
    if not H % 2 and not W % 2:
        return frame
    return cv2.copyMakeBorder(frame, 0, H % 2, 0, W % 2,
                              cv2.BORDER_REPLICATE)


def _writer(path, fps, size):
    with image_io.stderr_captured():
        return cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*FOURCC), fps,
                               size)


def _writer_opens(size, fps=DEFAULT_FPS):
    """Whether OpenCV opens an ``mp4v`` writer of frame ``size`` at ``fps``
    (tried on a file in a temporary folder, removed); None when there is
    no temporary folder to try in."""
    try:
        with tempfile.TemporaryDirectory(prefix='pspnet-') as folder:
            writer = _writer(os.path.join(folder, 'probe.mp4'), fps, size)
            opened = writer.isOpened()
            writer.release()
    except OSError:
        return None
    return opened


def check_writer(target, size, fps=DEFAULT_FPS):
    """Check, before the model loads, that the video ``target`` can be
    written with frames of ``size`` (W, H): OpenCV opens an ``mp4v``
    writer of its :func:`written_size`.

    Raises:
        UserError: The size is beyond what ``mp4v`` takes, or this
        OpenCV has no ``mp4v`` encoder; the message names ``target``.
    """
    W, H = size
    out = written_size(size)
    if max(out) > MAX_SIDE:
        raise UserError(
            'cannot write {}: the frames are {}x{} and the mp4v encoder '
            'takes at most {} pixels a side; scale the video down to fit '
            'and pass that'.format(target, W, H, MAX_SIDE))
    if _writer_opens(out, fps) is not False:
        return
    if not _writer_opens((64, 64)):
        raise UserError('cannot write {}: OpenCV\'s FFmpeg has no mp4v '
                        'encoder here; install opencv-python-headless from '
                        'PyPI'.format(target))
    if not _writer_opens((64, 64), fps):
        raise UserError('cannot write {}: OpenCV\'s mp4v writer refuses the '
                        'frame rate of the video, {:g} fps; convert the video '
                        'to a usual frame rate (such as 25 or 30) and pass '
                        'that'.format(target, fps))
    raise UserError('cannot write {}: OpenCV\'s mp4v writer refuses frames '
                    'of {}x{} (written as {}x{}); scale the video and pass '
                    'that'.format(target, W, H, out[0], out[1]))


def _open_writer(tmp_path, target, fps, size):
    """A writer of frames of :func:`written_size` into ``tmp_path``, the
    temporary file of ``target`` (which messages name)."""
    writer = _writer(tmp_path, fps, written_size(size))
    if not writer.isOpened():
        writer.release()
        check_writer(target, size, fps)  # says why
        raise UserError('cannot write {}: OpenCV could not open a video '
                        'writer there; pass another --output'.format(target))
    return writer


def _check_written(tmp_path, target, size, frames):
    """Read a finished video back: it must hold ``frames`` frames of
    :func:`written_size`. (OpenCV's writer reports no error: on a full
    disk it leaves a file without its index.)

    Raises:
        UserError: Naming ``target``.
    """
    with image_io.stderr_captured():
        capture = cv2.VideoCapture(tmp_path)
    try:
        got = (int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
               int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
               int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) \
            if capture.isOpened() else None
    finally:
        capture.release()
    if got == (frames,) + written_size(size):
        return
    raise UserError(
        'could not write {}: the file OpenCV wrote {}, not {} frames of '
        '{}x{} (a full disk or a file size limit); nothing was written; '
        'free some space on its disk or pass another --output'.format(
            target, 'cannot be read back' if got is None else
            'holds {} frames of {}x{}'.format(*got), frames,
            *written_size(size)))


def frame_labels_in(path):
    """The frame-label PNGs an earlier run left in the folder ``path``
    (which :func:`segment_video` replaces whole).

    Returns:
        int or None: How many; None when ``path`` does not exist.

    Raises:
        UserError: ``path`` is a file or a link, or holds anything else
        than frame-label PNGs (``NNNNNN.png``): files of the user's.
    """
    if not os.path.lexists(path):
        return None
    if os.path.islink(path) or not os.path.isdir(path):
        raise UserError('{} is a {}; the frame labels go in a folder of that '
                        'name: move it or pass another --output'.format(
                            path, 'link' if os.path.islink(path) else 'file'))
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        raise UserError('cannot read the frame-label folder {} ({}); check '
                        'its permissions or pass another --output'.format(
                            path, e.strerror or e))
    other = [name for name in names
             if not (FRAME_LABEL_NAME.match(name) and os.path.isfile(
                 os.path.join(path, name))
                 and not os.path.islink(os.path.join(path, name)))]
    if other:
        raise UserError(
            '{} holds {} that demo did not write ({}{}); it replaces that '
            'folder whole: move {} elsewhere, or pass another --output'
            .format(path, '{} entries'.format(len(other)) if len(other) > 1
                    else 'an entry', ', '.join(other[:3]),
                    ', ...' if len(other) > 3 else '',
                    'them' if len(other) > 1 else 'it'))
    return len(names)


def segment_video(model, path, prefix, colors, mask=False,
                  frame_labels=False, file=None, gpu=-1):
    """Segment every frame of a video and write what it looks like.

    The model is the one given (loaded once); frames are segmented one by
    one with its ``predict`` (its windows, flip and scales). A bar in
    frames with an estimate of the time left goes to ``file`` (default
    stderr; plain lines when that is no terminal).

    The videos have the frame rate of the input and the frame size
    :func:`written_size`: the input's, each odd side padded by one (pixel
    (x, y) of every written frame is pixel (x, y) of the input frame and
    of its label PNG).

    Args:
        model (pspnet.PSPNet): The network.
        path (str): Video file.
        prefix (str): Output prefix (:func:`output_paths`); its folder is
            created.
        colors: (n_class, 3) RGB class colours in [0, 255].
        mask (bool): Also write the colour mask as a video.
        frame_labels (bool): Also write each frame's (H, W) class ids as a
            PNG (8-bit, 16-bit beyond 256 classes) in a folder, which
            replaces an earlier run's (a folder holding anything else is
            refused, :func:`frame_labels_in`).
        file: Stream of the progress bar and the skipped-frame lines.
        gpu (int): The model's GPU, negative for the CPU (for the memory
            check of the frames' scores, :func:`pspnet.memory.check_image`).

    Returns:
        dict: ``paths`` (:func:`output_paths`), ``frames`` (frames
        segmented and written), ``skipped`` (indices of frames that could
        not be decoded), ``fps``, ``size`` ((W, H) of the input),
        ``written_size`` ((W, H) of the written videos) and
        ``replaced_labels`` (how many frame labels of an earlier run the
        folder held; None when there was none or no ``frame_labels``).

    Raises:
        UserError: The video cannot be opened or written. Outputs are
        complete or absent.
    """
    paths = output_paths(prefix, mask, frame_labels)
    capture, fps, size, n_frames = open_video(path)
    try:
        replaced = (frame_labels_in(paths['labels']) if frame_labels
                    else None)
        for kind in ('overlay', 'color'):
            if kind in paths:
                check_writer(paths[kind], size, fps)
        memory.check_image(path, size[::-1], model.n_class, model.scales,
                           gpu)
    except BaseException:
        capture.release()
        raise
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    written = 0
    skipped = []
    bar = progress.bar(total=n_frames, unit='frame',
                       desc=os.path.basename(path), file=file)
    try:
        with atomic.replaced_file(paths['overlay']) as overlay_tmp, \
                _maybe(mask, atomic.replaced_file, paths.get('color')) \
                as color_tmp, \
                _maybe(frame_labels, atomic.replaced_folder,
                       paths.get('labels')) as labels_tmp:
            overlay_out = _open_writer(overlay_tmp, paths['overlay'], fps,
                                       size)
            color_out = None
            try:
                if mask:
                    color_out = _open_writer(color_tmp, paths['color'], fps,
                                             size)
                for index, frame, why in frames(capture, n_frames):
                    if frame is not None and (frame.shape[1],
                                              frame.shape[0]) != size:
                        skipped.append(index)
                        progress.write(
                            'skipped: frame {} of {} is {}x{}, not the '
                            'video\'s {}x{}'.format(
                                index, path, frame.shape[1], frame.shape[0],
                                size[0], size[1]), file=file)
                        bar.update(1)
                        continue
                    if frame is None:
                        skipped.append(index)
                        progress.write('skipped: frame {} of {} could not '
                                       'be decoded{}'.format(
                                           index, path, ' ({})'.format(why)
                                           if why else ''), file=file)
                        bar.update(1)
                        continue
                    img = frame_to_image(frame)
                    try:
                        label = model.predict([img])[0]
                    except MemoryError:
                        raise UserError(
                            'out of memory segmenting the {}x{} frames of {} '
                            'at input size {}; use a smaller --input-size, '
                            'or close other programs'.format(
                                size[0], size[1], path, model.input_size[0]))
                    overlay_out.write(pad_frame(image_to_frame(
                        visualizations.overlay_label(img, label, colors))))
                    if color_out is not None:
                        color_out.write(pad_frame(image_to_frame(
                            visualizations.colorize_label(label, colors))))
                    if labels_tmp is not None:
                        _write_frame_label(labels_tmp, paths['labels'],
                                           index, label, model.n_class)
                    written += 1
                    bar.update(1)
            finally:
                overlay_out.release()
                if color_out is not None:
                    color_out.release()
            if written == 0:
                raise UserError('no frame of video {} could be decoded; '
                                'pass another file'.format(path))
            _check_written(overlay_tmp, paths['overlay'], size, written)
            if mask:
                _check_written(color_tmp, paths['color'], size, written)
    finally:
        bar.close()
        capture.release()
    return {'paths': paths, 'frames': written, 'skipped': skipped,
            'fps': fps, 'size': size, 'written_size': written_size(size),
            'replaced_labels': replaced or None}


def _write_frame_label(tmp_folder, folder, index, label, n_class):
    """Write frame ``index``'s label PNG into the temporary folder of the
    frame-label folder ``folder``; an error names the file in
    ``folder``."""
    name = '{:06d}.png'.format(index)
    try:
        image_io.write_label_png(os.path.join(tmp_folder, name), label,
                                 n_class)
    except UserError as e:
        raise UserError(str(e).replace(os.path.join(tmp_folder, name),
                                       os.path.join(folder, name)))


class _maybe(object):
    """``context(arg)`` when ``enabled``, else a context yielding None."""

    def __init__(self, enabled, context, arg):
        self._context = context(arg) if enabled else None

    def __enter__(self):
        return (self._context.__enter__() if self._context is not None
                else None)

    def __exit__(self, *exc):
        if self._context is not None:
            return self._context.__exit__(*exc)
        return False


def has_display():
    """Whether a window can be opened: a display (X11 or Wayland on
    Linux) and an OpenCV built with windows (not the headless wheel).

    Returns:
        str or None: Why not, or None when it can.
    """
    if sys.platform.startswith('linux') and not (
            os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')):
        return ('there is no display (DISPLAY is not set); run it on a '
                'desktop')
    try:
        cv2.namedWindow('pspnet-check', cv2.WINDOW_NORMAL)
        cv2.destroyWindow('pspnet-check')
    except cv2.error:
        return ('this OpenCV has no windows (opencv-python-headless; '
                'replace it with opencv-python of the same version)')
    return None


def open_camera(index):
    """Check that a live view can run and open camera ``index``.

    Raises:
        UserError: No display, or the camera cannot be opened.
    """
    why = has_display()
    if why:
        raise UserError('--camera shows a window, but {}; or segment a '
                        'recorded video file'.format(why))
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise UserError('camera {} cannot be opened (none there, or in use); '
                        'pass another --camera number'.format(index))
    return capture


def run_camera(model, capture, colors, window='PSPNet (q or Esc quits)'):
    """Segment a camera's frames live in a window until q or Esc is
    pressed or the window is closed.

    Returns:
        int: Frames shown.
    """
    shown = 0
    failed = 0
    start = time.time()
    cv2.namedWindow(window, cv2.WINDOW_NORMAL)
    try:
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                failed += 1
                if failed > MAX_FAILED_READS:
                    raise UserError('the camera stopped sending frames; '
                                    'check its connection')
                continue
            failed = 0
            img = frame_to_image(frame)
            label = model.predict([img])[0]
            out = image_to_frame(
                visualizations.overlay_label(img, label, colors))
            shown += 1
            rate = shown / max(time.time() - start, 1e-6)
            cv2.putText(out, '{:.1f} fps'.format(rate), (8, 24),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
            cv2.imshow(window, out)
            key = cv2.waitKey(1) & 0xFF
            if key in (ord('q'), 27):
                break
            if cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) < 1:
                break
    finally:
        capture.release()
        cv2.destroyAllWindows()
    return shown
