#!/usr/bin/env python
"""Segment images with PSPNet and write what the segmentation looks like.

    python demo.py [--gpu N] [--model pspnet_resnet50|pspnet_resnet101]
        [--pretrained-model PATH|cityscapes|ade20k]
        [--dataset cityscapes|ade20k|voc] [--input-size N]
        [--scales S,S,...] [--no-flip] [--output PREFIX] [--show]
        [--video-mask] [--frame-labels] IMAGE|VIDEO [IMAGE|VIDEO ...]
    python demo.py [options] --camera N

For each image it writes ``PREFIX_label.png`` (class ids, 8-bit, or 16-bit
beyond 256 classes), ``PREFIX_color.png`` (the classes' colours),
``PREFIX_overlay.png`` (the colours blended over the image) and
``PREFIX_figure.png`` (the image beside the colours, with a legend of the
classes present). With one image file PREFIX defaults to
``result/<image name without extension>``. With several images, a
folder of images, or an ``--output`` ending in ``/``, ``--output`` is a
folder (default ``result``) and each image's files are
``<folder>/<image name without extension>_*.png`` (images of the same name
get the extension and then a number appended). In a batch, unreadable
images are skipped with a message and the exit status is 2 at the end;
when none can be read, nothing is written. Folders are created only for
outputs, and a failed run removes the files and folders it created.

A video file (by its extension, :data:`pspnet.video.VIDEO_EXTENSIONS`) is
segmented frame by frame into ``PREFIX_overlay.mp4`` (the same frame rate
and size; the mp4v encoder takes only even sizes, so an odd width or
height is written one larger, a copy of the last column or row: pixel
(x, y) is always the frame's and its label PNG's), with ``--video-mask``
also ``PREFIX_color.mp4`` and with ``--frame-labels`` a folder
``PREFIX_labels`` of one label PNG per frame (``000000.png``, ...; the
folder of an earlier run is replaced whole, one holding anything else is
refused); frames that cannot be decoded are skipped and counted (exit
status 2 at the end). ``--camera N`` segments camera N live in a window.
"""

import os

from pspnet import atomic
from pspnet import device
from pspnet import flags
from pspnet import image_io
from pspnet import memory
from pspnet import models
from pspnet import precision
from pspnet import progress
from pspnet import video
from pspnet import visualizations
from pspnet.cli import ArgumentParser
from pspnet.cli import exit_on_user_error
from pspnet.errors import UserError

OUTPUTS = ('label', 'color', 'overlay', 'figure')


def parse_args(argv=None):
    parser = ArgumentParser(
        description='Segment images with PSPNet; write the label map (class '
        'ids), the colour mask, an overlay and a figure with a legend.')
    parser.add_argument('--gpu', '-g', type=int, default=-1, metavar='N',
                        help='GPU id; negative for the CPU (default)')
    parser.add_argument('--model', choices=sorted(models.MODELS),
                        default='pspnet_resnet101',
                        help='network depth (default pspnet_resnet101)')
    parser.add_argument('--pretrained-model',
                        metavar='PATH|cityscapes|ade20k',
                        help='cityscapes, ade20k or an .npz file (default: '
                        'the preset of --dataset)')
    parser.add_argument('--dataset', type=flags.dataset,
                        metavar=flags.dataset_names(),
                        help='class names and default weights (default: '
                        'the dataset of --pretrained-model, else cityscapes)')
    parser.add_argument('--input-size', type=flags.input_size, metavar='N',
                        help='network input size (default: the dataset\'s '
                        'or the weights\' dataset\'s, {})'.format(
                            flags.dataset_defaults('input_size')))
    flags.add_prediction_arguments(parser)
    parser.add_argument('--output', '-o', metavar='PREFIX',
                        help='prefix of the output files of one image '
                        '(default result/<image name>); the output folder '
                        'for several images, a folder of images or a '
                        'PREFIX ending in / (default result)')
    parser.add_argument('--show', action='store_true',
                        help='also open each figure in a window')
    flags.add_inference_arguments(parser)
    parser.add_argument('--video-mask', action='store_true',
                        help='for a video, also write the colour mask as '
                        'PREFIX_color.mp4')
    parser.add_argument('--frame-labels', action='store_true',
                        help='for a video, also write each frame\'s class '
                        'ids as PREFIX_labels/NNNNNN.png (replacing that '
                        'folder of an earlier run)')
    parser.add_argument('--camera', type=flags.non_negative_int,
                        metavar='N', help='segment camera N (0 is the first) '
                        'live in a window, until q or Esc')
    parser.add_argument('images', nargs='*', metavar='IMAGE|VIDEO',
                        help='image or video files, or folders of images')
    args = parser.parse_args(argv)
    if args.camera is None and not args.images:
        parser.error('pass an IMAGE or VIDEO (or --camera N)')
    if args.camera is not None and args.images:
        parser.error('--camera takes no IMAGE or VIDEO')
    return args


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
    """Output prefix of every image, and whether they go to one folder."""
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


def check_outputs(prefixes, items, args=None):
    """Before the model loads: every output's folder can be written or
    created, and no output path is an existing folder (a file for the
    folder of frame labels)."""
    for prefix in {os.path.dirname(p) for p in prefixes}:
        atomic.check_output_folder(prefix)
    for prefix, path in zip(prefixes, items):
        for kind, out in sorted(item_outputs(prefix, path, args).items()):
            if kind == 'labels':
                # A file, a link, or a folder with files of the user's.
                video.frame_labels_in(out)
            elif os.path.isdir(out):
                raise UserError('{} is a folder; move it or pass another '
                                '--output'.format(out))


def item_outputs(prefix, path, args=None):
    """The files (and the frame-label folder) of one input; with no
    ``args``, every output a video may have."""
    if video.is_video(path):
        return video.output_paths(prefix, getattr(args, 'video_mask', True),
                                  getattr(args, 'frame_labels', True))
    return image_paths(prefix)


def run_camera(args):
    capture = video.open_camera(args.camera)
    try:
        model = load_model(args)
    except BaseException:
        capture.release()
        raise
    _, colors = visualizations.label_names_and_colors(model.n_class,
                                                      model.dataset)
    shown = video.run_camera(model, capture, colors)
    print('segmented {} frame(s) of camera {}'.format(shown, args.camera))


def load_model(args):
    model = models.build_model(args.model, args.dataset,
                               args.pretrained_model, args.input_size)
    model.flip = not args.no_flip
    if args.scales:
        model.scales = args.scales
    device.use_gpu(model, args.gpu)
    for line in precision.setup_inference(model, args.dtype, args.tf32,
                                          args.gpu):
        print(line, flush=True)
    return model


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    if args.input_size is not None:
        memory.check_input_size(models.model_class(args.model).n_layer,
                                args.input_size, gpu=args.gpu)
    if args.camera is not None:
        return run_camera(args)
    items = image_io.list_images(args.images)
    videos = [p for p in items if video.is_video(p)]
    if (args.video_mask or args.frame_labels) and not videos:
        raise UserError('--video-mask and --frame-labels are for videos '
                        '({}); drop them for images'.format(
                            ', '.join(video.VIDEO_EXTENSIONS[:4]) + ', ...'))
    prefixes, to_folder = output_prefixes(items, args.images, args.output)
    check_outputs(prefixes, items, args)
    plt = _pyplot_for_show() if args.show else None
    # Read a single image, or open a single video and check that its
    # videos can be written, before the slow model load, to fail fast.
    first_img = None
    if len(items) == 1:
        if videos:
            check_video_outputs(items[0], prefixes[0], args)
        else:
            first_img = image_io.read_image(items[0])

    # Folders are made when the first output goes in them, and removed
    # again (when empty) if the run fails or nothing could be written.
    created_folders = []
    created_files = []
    try:
        model = load_model(args)
        names, colors = visualizations.label_names_and_colors(model.n_class,
                                                              model.dataset)
        failed, skipped_frames = [], 0
        bar = progress.bar(total=len(items), unit='image',
                           disable=len(items) == 1 or bool(videos))
        for path, prefix in zip(items, prefixes):
            outputs = item_outputs(prefix, path, args)
            new_files = [p for p in outputs.values()
                         if not os.path.lexists(p)]
            folder = os.path.dirname(prefix)
            try:
                if video.is_video(path):
                    created_folders += atomic.make_folders(folder or '.')
                    created_files += new_files
                    result = video.segment_video(
                        model, path, prefix, colors, args.video_mask,
                        args.frame_labels, gpu=args.gpu)
                else:
                    img = first_img if first_img is not None \
                        else image_io.read_image(path)
                    created_folders += atomic.make_folders(folder or '.')
                    created_files += new_files
                    paths = segment(model, img, names, colors, prefix, plt,
                                    args.gpu, path)
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


def check_video_outputs(path, prefix, args):
    """Before the model loads: the video opens, and its videos can be
    written at its frame size."""
    capture, fps, size, _ = video.open_video(path)
    capture.release()
    outputs = video.output_paths(prefix, args.video_mask, args.frame_labels)
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


if __name__ == '__main__':
    main()
