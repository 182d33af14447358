#!/usr/bin/env python
"""Export a PSPNet to ONNX for ONNX Runtime, OpenVINO and other runtimes.

    python export_onnx.py [--model pspnet_resnet50|pspnet_resnet101]
        --pretrained-model PATH|cityscapes|ade20k
        [--dataset cityscapes|ade20k|voc] [--input-size N] [--check]
        OUT.onnx

The graph takes ``image``, a (B, 3, N, N) float32 RGB batch in [0, 255]
(the mean is subtracted inside the graph, B is free), and returns
``logits``, (B, n_class, N, N) float32 class scores before softmax at the
input size. Images of other sizes go through the windows or the canvas of
``pspnet.onnx_export.OnnxRuntimeSegmenter`` (see docs/onnx.md). Needs onnx below 1.19 (``pip install -r requirements-extras.txt``);
``--check`` also needs onnxruntime.
"""

from pspnet import atomic
from pspnet import flags
from pspnet import memory
from pspnet import models
from pspnet import onnx_export
from pspnet.cli import ArgumentParser
from pspnet.cli import exit_on_user_error


def parse_args(argv=None):
    parser = ArgumentParser(
        description='Export a PSPNet to ONNX: input "image" (B, 3, N, N) '
        'float32 RGB in [0, 255], output "logits" (B, n_class, N, N).')
    parser.add_argument('--model', choices=sorted(models.MODELS),
                        default='pspnet_resnet101',
                        help='network depth (default pspnet_resnet101)')
    parser.add_argument('--pretrained-model', required=True,
                        metavar='PATH|cityscapes|ade20k',
                        help='cityscapes, ade20k or an .npz file')
    parser.add_argument('--dataset', type=flags.dataset,
                        metavar=flags.dataset_names(),
                        help='the dataset of the classes (default: that of '
                        '--pretrained-model)')
    parser.add_argument('--input-size', type=flags.input_size, metavar='N',
                        help='the fixed input size N of the graph (default: '
                        'the dataset\'s or the weights\' dataset\'s, {})'
                        .format(flags.dataset_defaults('input_size')))
    parser.add_argument('--check', action='store_true',
                        help='before writing, run the graph with '
                        'onnxruntime on a random image and compare it with '
                        'Chainer (needs onnxruntime)')
    parser.add_argument('output', metavar='OUT.onnx',
                        help='the ONNX file to write (replaced if it exists)')
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    onnx_export.require_onnx()
    if args.check:
        onnx_export.require_onnxruntime()
    atomic.check_target(args.output, '.onnx file')
    depth = models.model_class(args.model).n_layer
    if args.input_size is not None:
        memory.check_input_size(depth, args.input_size, path='export')
    try:
        model = models.build_model(args.model, args.dataset,
                                   args.pretrained_model, args.input_size)
    except MemoryError:
        raise onnx_export.out_of_memory(args.output, args.input_size)
    # The default input size (the dataset's) is known once the model is.
    memory.check_input_size(depth, model.input_size[0], path='export')
    _, check = onnx_export.export(model, args.output, check=args.check)
    if check:
        print('onnxruntime against Chainer on a random image: logits within '
              '{:.2g} relative, labels equal on {:.3%} of the pixels'.format(
                  *check))
    H, W = model.input_size
    print('wrote {}: {}, {} classes{}; input "{}" (B, 3, {}, {}) float32 RGB '
          'in [0, 255], output "{}" (B, {}, {}, {}) float32 logits'.format(
              args.output, type(model).__name__, model.n_class,
              ' ({})'.format(model.dataset.name) if model.dataset else '',
              onnx_export.INPUT_NAME, H, W, onnx_export.OUTPUT_NAME,
              model.n_class, H, W))


if __name__ == '__main__':
    main()
