"""Segment images, folders, videos and a camera, and write what the
segmentation looks like (demo.py).

For each image: ``PREFIX_label.png`` (class ids), ``PREFIX_color.png``,
``PREFIX_overlay.png`` and ``PREFIX_figure.png`` (:data:`OUTPUTS`); for a
video ``PREFIX_overlay.mp4``, optionally ``PREFIX_color.mp4`` and a folder
``PREFIX_labels`` of label PNGs (:mod:`pspnet.video`). Where the files go:
:func:`output_prefixes`.
"""

import dataclasses
import os

from pspnet import atomic
from pspnet import image_io
from pspnet import memory
from pspnet import models
from pspnet import progress
from pspnet import video
from pspnet import visualizations
from pspnet.apps import model_options
from pspnet.errors import UserError

#: The files written for each image, ``PREFIX_<kind>.png``.
OUTPUTS = ('label', 'color', 'overlay', 'figure')


@dataclasses.dataclass
class DemoOptions(model_options.ModelOptions):
    """The options of demo.py: a :class:`~pspnet.apps.model_options.ModelOptions`
    and where and what to write.

    Attributes:
        output (str or None): The prefix of one image's files, or the
            folder of several (:func:`output_prefixes`).
        show (bool): Also open each figure in a window.
        video_mask (bool): For a video, also write ``PREFIX_color.mp4``.
        frame_labels (bool): For a video, also write the folder
            ``PREFIX_labels`` of label PNGs.
    """

    output: str = None
    show: bool = False
    video_mask: bool = False
    frame_labels: bool = False


def _unique_stems(images):
    """File-name stems, made unique by the extension, then a number."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
    stems = [stem + '_' + os.path.splitext(p)[1].lstrip('.')
             if stems.count(stem) > 1 else stem
             for stem, p in zip(stems, images)]
    unique = []
    for stem in stems:
        name, n = stem, 1
        while name in unique:
            n += 1
            name = '{}_{}'.format(stem, n)
        unique.append(name)
    return unique


def output_prefixes(images, inputs, output):
    """Output prefix of every image, and whether they go to one folder.

    With one image file PREFIX is ``output`` or ``result/<image name
    without extension>``. With several images, a folder among ``inputs`` or
    an ``output`` ending in ``/`` (or naming a folder), ``output`` is a
    folder (default ``result``) and each image's prefix is ``<folder>/<image
    name without extension>`` (names made unique by :func:`_unique_stems`).
    """
    to_folder = (len(images) > 1 or any(os.path.isdir(p) for p in inputs)
                 or (output is not None and (output.endswith(os.sep)
                                             or os.path.isdir(output))))
    if to_folder:
        folder = output or 'result'
        return [os.path.join(folder, stem)
                for stem in _unique_stems(images)], True
    stem = os.path.splitext(os.path.basename(images[0]))[0]
    return [output or os.path.join('result', stem)], False


def _pyplot_for_show():
    import matplotlib.pyplot as plt
    import matplotlib.rcsetup
    if plt.get_backend().lower() in matplotlib.rcsetup.non_interactive_bk:
        raise UserError('--show needs a display, but matplotlib found none '
                        '(backend {}); drop --show and open the written '
                        'figure instead'.format(plt.get_backend()))
    return plt


def image_paths(prefix):
    """The four files of one image."""
    return {kind: '{}_{}.png'.format(prefix, kind) for kind in OUTPUTS}


def segment(model, img, names, colors, prefix, plt=None, gpu=-1,
            name=None):
    """Segment one image and write its four pictures; returns the paths.
    A bar over its windows (and flips, scales) appears once it has taken
    :data:`pspnet.progress.WORK_DELAY` seconds."""
    name = name or os.path.basename(prefix)
    memory.check_image(name, img.shape[1:], model.n_class, model.scales,
                       gpu)
    bar = progress.work_progress(desc=os.path.basename(prefix))
    try:
        label = model.predict([img], progress=bar)[0]
    except MemoryError:
        raise UserError('out of memory segmenting {} ({}x{}) at input size '
                        '{}; use a smaller image or --input-size, or close '
                        'other programs'.format(
                            name, img.shape[2], img.shape[1],
                            model.input_size[0]))
    finally:
        bar.close()
    paths = image_paths(prefix)
    image_io.write_label_png(paths['label'], label, model.n_class)
    image_io.write_image(paths['color'],
                         visualizations.colorize_label(label, colors))
    image_io.write_image(paths['overlay'],
                         visualizations.overlay_label(img, label, colors))
    fig, _ = visualizations.segmentation_figure(
        img, label, names, colors, fig=plt.figure() if plt else None,
        title=os.path.basename(prefix))
    visualizations.save_figure(fig, paths['figure'])
    if plt:
        plt.show()
        plt.close(fig)
    return paths


def check_outputs(prefixes, items, options=None):
    """Before the model loads: every output's folder can be written or
    created, and no output path is an existing folder (a file for the
    folder of frame labels)."""
    for prefix in {os.path.dirname(p) for p in prefixes}:
        atomic.check_output_folder(prefix)
    for prefix, path in zip(prefixes, items):
        for kind, out in sorted(item_outputs(prefix, path, options).items()):
            if kind == 'labels':
                # A file, a link, or a folder with files of the user's.
                video.frame_labels_in(out)
            elif os.path.isdir(out):
                raise UserError('{} is a folder; move it or pass another '
                                '--output'.format(out))


def item_outputs(prefix, path, options=None):
    """The files (and the frame-label folder) of one input; with no
    ``options``, every output a video may have."""
    if video.is_video(path):
        return video.output_paths(prefix, getattr(options, 'video_mask', True),
                                  getattr(options, 'frame_labels', True))
    return image_paths(prefix)


def segment_files(options, inputs):
    """Segment images, folders of images and videos, and write their
    outputs (see demo.py); prints what it wrote.

    Everything that can be checked is checked before the model loads: the
    outputs' folders, a single image (read) or video (opened, its writers
    tried). In a batch an input that cannot be read is skipped with a
    message; the run then ends in a :class:`UserError` naming how many.
    Folders are made when the first output goes in them; a failed run
    removes the files and folders it made.

    Args:
        options (DemoOptions): The model and the outputs.
        inputs (list of str): Image and video files, folders of images.

    Raises:
        UserError: Bad inputs or outputs, weights that do not fit, inputs
        that could not be read (after the others were written).
    """
    check_input_size(options)
    items = image_io.list_images(inputs)
    videos = [p for p in items if video.is_video(p)]
    if (options.video_mask or options.frame_labels) and not videos:
        raise UserError('--video-mask and --frame-labels are for videos '
                        '({}); drop them for images'.format(
                            ', '.join(video.VIDEO_EXTENSIONS[:4]) + ', ...'))
    prefixes, to_folder = output_prefixes(items, inputs, options.output)
    check_outputs(prefixes, items, options)
    plt = _pyplot_for_show() if options.show else None
    # Read a single image, or open a single video and check that its
    # videos can be written, before the slow model load, to fail fast.
    first_img = None
    if len(items) == 1:
        if videos:
            check_video_outputs(items[0], prefixes[0], options)
        else:
            first_img = image_io.read_image(items[0])

    # Folders are made when the first output goes in them, and removed
    # again (when empty) if the run fails or nothing could be written.
    created_folders = []
    created_files = []
    try:
        model = load_model(options)
        names, colors = visualizations.label_names_and_colors(model.n_class,
                                                              model.dataset)
        failed, skipped_frames = [], 0
        bar = progress.bar(total=len(items), unit='image',
                           disable=len(items) == 1 or bool(videos))
        for path, prefix in zip(items, prefixes):
            outputs = item_outputs(prefix, path, options)
            new_files = [p for p in outputs.values()
                         if not os.path.lexists(p)]
            folder = os.path.dirname(prefix)
            try:
                if video.is_video(path):
                    created_folders += atomic.make_folders(folder or '.')
                    created_files += new_files
                    result = video.segment_video(
                        model, path, prefix, colors, options.video_mask,
                        options.frame_labels, gpu=options.gpu)
                else:
                    img = first_img if first_img is not None \
                        else image_io.read_image(path)
                    created_folders += atomic.make_folders(folder or '.')
                    created_files += new_files
                    paths = segment(model, img, names, colors, prefix, plt,
                                    options.gpu, path)
            except UserError as e:
                if len(items) == 1:
                    raise
                progress.write('skipped: {}'.format(e))
                failed.append(path)
                bar.update(1)
                continue
            if video.is_video(path):
                skipped_frames += len(result['skipped'])
                print(video_line(result))
                continue
            bar.update(1)
            if not to_folder:
                print('wrote {} (class ids), {}, {}, {}'.format(
                    *[paths[kind] for kind in OUTPUTS]))
        bar.close()
        if failed and len(failed) == len(items):
            raise UserError(
                'none of the {} {} could be read (see the skipped lines '
                'above); nothing was written; fix or remove them'.format(
                    len(items), 'inputs' if videos else 'images'))
    except KeyboardInterrupt:
        # Finished outputs stay (complete files); unfinished ones were never
        # renamed into place, and folders left empty go.
        atomic.remove_created((), created_folders)
        raise
    except BaseException:
        atomic.remove_created(created_files, created_folders)
        raise
    images = [p for p in items if not video.is_video(p)]
    done = len(images) - len([p for p in failed if p in images])
    if to_folder and done:
        print('wrote {} for {} image(s) to {}'.format(
            ', '.join('<name>_{}.png'.format(kind) for kind in OUTPUTS),
            done, os.path.dirname(prefixes[0]) or '.'))
    problems = []
    if failed:
        problems.append('{} of {} {} could not be read (see the skipped '
                        'lines above); fix or remove them'.format(
                            len(failed), len(items),
                            'inputs' if videos else 'images'))
    if skipped_frames:
        problems.append('{} video frame(s) could not be decoded and were '
                        'skipped (see above); the other frames were written'
                        .format(skipped_frames))
    if problems:
        raise UserError('; '.join(problems))


def segment_camera(options, camera):
    """Segment camera ``camera`` live in a window until q or Esc; prints
    how many frames it showed."""
    check_input_size(options)
    capture = video.open_camera(camera)
    try:
        model = load_model(options)
    except BaseException:
        capture.release()
        raise
    _, colors = visualizations.label_names_and_colors(model.n_class,
                                                      model.dataset)
    shown = video.run_camera(model, capture, colors)
    print('segmented {} frame(s) of camera {}'.format(shown, camera))


def check_input_size(options):
    """Refuse an ``input_size`` that cannot fit in memory, and flags that do
    not fit an exported model, before anything else."""
    model_options.check_options(options)
    if options.input_size is not None and not model_options.is_exported(
            options):
        memory.check_input_size(
            models.model_class(model_options.model_name(options)).n_layer,
            options.input_size, gpu=options.gpu)


def load_model(options):
    """The model of ``options``, placed and set up; prints where it runs."""
    model, lines = model_options.load_model(options)
    for line in lines:
        print(line, flush=True)
    return model


def check_video_outputs(path, prefix, options):
    """Before the model loads: the video opens, and its videos can be
    written at its frame size."""
    capture, fps, size, _ = video.open_video(path)
    capture.release()
    outputs = video.output_paths(prefix, options.video_mask,
                                options.frame_labels)
    for kind in ('overlay', 'color'):
        if kind in outputs:
            video.check_writer(outputs[kind], size, fps)


def video_line(result):
    """What demo prints for a written video."""
    paths = result['paths']
    W, H = result['size']
    padded = ''
    if result['written_size'] != (W, H):
        padded = ('; the videos are {}x{}: mp4v takes only even sizes, so '
                  'the last {} {} repeated'.format(
                      result['written_size'][0], result['written_size'][1],
                      ' and '.join(side for side, odd in
                                   (('column', W % 2), ('row', H % 2))
                                   if odd),
                      'are' if W % 2 and H % 2 else 'is'))
    labels = ''
    if 'labels' in paths:
        labels = ', ' + paths['labels'] + (
            ' (replacing the {} frame labels of an earlier run)'.format(
                result['replaced_labels']) if result['replaced_labels']
            else '')
    skipped = result['skipped']
    return 'wrote {}{}{} ({} frames{}, {}x{}, {:g} fps{}){}'.format(
        paths['overlay'], ', ' + paths['color'] if 'color' in paths else '',
        labels, result['frames'],
        ', {} skipped'.format(len(skipped)) if skipped else '', W, H,
        result['fps'], padded, '' if not skipped else
        ': frame{} {} could not be decoded'.format(
            's' if len(skipped) > 1 else '', _ranges(skipped)))


def _ranges(indices):
    """'3, 7-9' for [3, 7, 8, 9]."""
    parts = []
    for i in indices:
        if parts and parts[-1][1] == i - 1:
            parts[-1][1] = i
        else:
            parts.append([i, i])
    return ', '.join(str(a) if a == b else '{}-{}'.format(a, b)
                     for a, b in parts)
