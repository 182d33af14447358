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

from pspnet import flags
from pspnet import models
from pspnet.apps import demo
from pspnet.cli import ArgumentParser
from pspnet.cli import exit_on_user_error


def parse_args(argv=None):
    parser = ArgumentParser(
        description='Segment images with PSPNet; write the label map (class '
        'ids), the colour mask, an overlay and a figure with a legend.')
    parser.add_argument('--gpu', '-g', type=int, default=-1, metavar='N',
                        help='GPU id; negative for the CPU (default)')
    parser.add_argument('--model', choices=sorted(models.MODELS),
                        help='network depth (default pspnet_resnet101; an '
                        'exported model\'s own)')
    parser.add_argument('--pretrained-model',
                        metavar='PATH|cityscapes|ade20k',
                        help='cityscapes, ade20k, an .npz file, or a model '
                        'of export_onnx.py: .onnx (ONNX Runtime) or .xml '
                        '(OpenVINO) (default: the preset of --dataset)')
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


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    options = demo.DemoOptions.from_namespace(args)
    if args.camera is not None:
        return demo.segment_camera(options, args.camera)
    demo.segment_files(options, args.images)


if __name__ == '__main__':
    main()
