#!/usr/bin/env python
"""Export a PSPNet to ONNX or OpenVINO, in float32, bfloat16 or INT8.

    python export_onnx.py [--model pspnet_resnet50|pspnet_resnet101]
        --pretrained-model PATH|cityscapes|ade20k
        [--dataset cityscapes|ade20k|voc|PATH.json] [--input-size N]
        [--check] [--precision float32|bf16|int8]
        [--calibration DATASET] [--calibration-split S]
        [--calibration-images N] [--evaluation-split S]
        [--evaluation-images N] [--data-dir DIR] [--max-miou-drop D]
        OUT.onnx|OUT.xml

The graph takes ``image``, a (B, 3, N, N) float32 RGB batch in [0, 255]
(the mean is subtracted inside the graph, B is free), and returns
``logits``, (B, n_class, N, N) float32 class scores before softmax at the
input size. ``OUT.onnx`` is an ONNX graph (ONNX Runtime), ``OUT.xml`` an
OpenVINO model (with ``OUT.bin``). ``--precision int8`` quantizes it,
calibrated on images of a dataset; ``bf16`` runs it in bfloat16 on
OpenVINO; both are measured against float32 on a labelled split before
they are written. demo.py and eval_semantic_segmentation.py run the files
(``--pretrained-model OUT.onnx``); see docs/onnx.md. Needs the extras of
``requirements-extras.txt``.
"""

from pspnet import flags
from pspnet import models
from pspnet.apps import export
from pspnet.cli import ArgumentParser
from pspnet.cli import exit_on_user_error
from pspnet.exported import PRECISIONS


def parse_args(argv=None):
    parser = ArgumentParser(
        description='Export a PSPNet to ONNX or OpenVINO (float32, bf16, '
        'int8): input "image" (B, 3, N, N) float32 RGB in [0, 255], output '
        '"logits" (B, n_class, N, N).')
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
    parser.add_argument('--precision', choices=PRECISIONS,
                        default='float32',
                        help='float32 (default); int8: quantized, calibrated '
                        'on --calibration images; bf16: bfloat16 on '
                        'OpenVINO (OUT.xml)')
    parser.add_argument('--calibration', type=flags.dataset,
                        metavar='DATASET', help='int8, bf16: the dataset '
                        'whose images calibrate and measure the model '
                        '(default: --dataset, else the weights\')')
    parser.add_argument('--calibration-split', metavar='S',
                        help='int8: the split of the calibration images '
                        '(default {})'.format(export.CALIBRATION_SPLIT))
    parser.add_argument('--calibration-images', type=flags.positive_int,
                        metavar='N', help='int8: how many images calibrate, '
                        'spread over the split (default {})'.format(
                            export.CALIBRATION_IMAGES))
    parser.add_argument('--evaluation-split', metavar='S',
                        help='int8, bf16: the labelled split on which mean '
                        'IoU and labels are compared with float32 (default '
                        '{})'.format(export.EVALUATION_SPLIT))
    parser.add_argument('--evaluation-images', type=flags.non_negative_int,
                        metavar='N', help='int8, bf16: how many of its '
                        'images (default {}; 0 measures nothing)'.format(
                            export.EVALUATION_IMAGES))
    parser.add_argument('--data-dir', default='auto', metavar='DIR',
                        help="the dataset's folder (default 'auto': "
                        '$CHAINER_DATASET_ROOT/pfnet/chainercv/DATASET)')
    parser.add_argument('--max-miou-drop', type=flags.non_negative_float,
                        metavar='D', help='int8, bf16: write nothing if the '
                        'mean IoU is more than D points (1/100) below '
                        'float32\'s')
    parser.add_argument('output', metavar='OUT.onnx|OUT.xml',
                        help='the file to write (replaced if it exists): '
                        '.xml for OpenVINO (and the .bin beside it), else '
                        'ONNX')
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    export.run(export.ExportOptions.from_namespace(parse_args(argv)))


if __name__ == '__main__':
    main()
