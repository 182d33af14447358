#!/usr/bin/env python
"""Segment images with PSPNet and write what the segmentation looks like.

    python demo.py [--gpu N] [--model pspnet_resnet50|pspnet_resnet101]
        [--pretrained-model PATH|cityscapes|ade20k]
        [--dataset cityscapes|ade20k|voc] [--input-size N]
        [--output PREFIX] [--show] IMAGE [IMAGE ...]

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
images are skipped with a message and the exit status is 2 at the end.
"""

import os
import sys

from tqdm import tqdm

from pspnet import device
from pspnet import flags
from pspnet import image_io
from pspnet import models
from pspnet import precision
from pspnet import visualizations
from pspnet.errors import ArgumentParser
from pspnet.errors import exit_on_user_error
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
    parser.add_argument('--output', '-o', metavar='PREFIX',
                        help='prefix of the output files of one image '
                        '(default result/<image name>); the output folder '
                        'for several images, a folder of images or a '
                        'PREFIX ending in / (default result)')
    parser.add_argument('--show', action='store_true',
                        help='also open each figure in a window')
    precision.add_inference_arguments(parser)
    parser.add_argument('images', nargs='+', metavar='IMAGE',
                        help='image files or folders of images')
    return parser.parse_args(argv)


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


def segment(model, img, names, colors, prefix, plt=None):
    """Segment one image and write its four pictures; returns the paths."""
    label = model.predict([img])[0]
    paths = {kind: '{}_{}.png'.format(prefix, kind) for kind in OUTPUTS}
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


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    images = image_io.list_images(args.images)
    prefixes, to_folder = output_prefixes(images, args.images, args.output)
    plt = _pyplot_for_show() if args.show else None
    # Read a single image before the slow model load, to fail fast.
    first_img = image_io.read_image(images[0]) if len(images) == 1 else None

    model = models.build_model(args.model, args.dataset,
                               args.pretrained_model, args.input_size)
    device.use_gpu(model, args.gpu)
    for line in precision.setup_inference(model, args.dtype, args.tf32,
                                          args.gpu):
        print(line, flush=True)
    names, colors = visualizations.label_names_and_colors(model.n_class,
                                                          model.dataset)

    failed = []
    for path, prefix in zip(tqdm(images, unit='image',
                                 disable=len(images) == 1), prefixes):
        try:
            img = first_img if first_img is not None \
                else image_io.read_image(path)
        except UserError as e:
            tqdm.write('skipped: {}'.format(e), file=sys.stderr)
            failed.append(path)
            continue
        paths = segment(model, img, names, colors, prefix, plt)
        if not to_folder:
            print('wrote {} (class ids), {}, {}, {}'.format(
                *[paths[kind] for kind in OUTPUTS]))
    if to_folder:
        done = len(images) - len(failed)
        print('wrote {} for {} image(s) to {}'.format(
            ', '.join('<name>_{}.png'.format(kind) for kind in OUTPUTS),
            done, os.path.dirname(prefixes[0]) or '.'))
    if failed:
        raise UserError('{} of {} images could not be read (see the skipped '
                        'lines above); fix or remove them'.format(
                            len(failed), len(images)))


if __name__ == '__main__':
    main()
