"""Evaluate PSPNet on Cityscapes, ADE20K, VOC or PATH.json (val or test).

Prints ChainerCV's table (IoU per class, mean IoU, class average accuracy,
global average accuracy) and the benchmark's own scores (Cityscapes: iIoU
and the category scores; ADE20K: the SceneParsing score).
``--save-predictions DIR`` writes every prediction in the format of the
benchmark's server, also for the test splits (no labels, no metrics).
``--report DIR`` writes the confusion matrix (PNG and CSV), each image's
scores (CSV), pictures of the worst images and a page, ``index.html``.
With ``--json``, ``--save-predictions`` or ``--report`` the progress is
kept in a checkpoint beside them: the same command continues an
interrupted run.
``mpiexec -n N python eval_semantic_segmentation.py ...`` splits the
images over N processes (one GPU each with --gpu).
"""

from pspnet import flags
from pspnet.apps import evaluate
from pspnet.cli import ArgumentParser
from pspnet.cli import exit_on_user_error
from pspnet.evaluations import report
from pspnet.exported import is_exported
from pspnet.models import MODELS


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', required=True, type=flags.dataset,
                        metavar=flags.dataset_names())
    parser.add_argument('--model', choices=sorted(MODELS),
                        help='network depth (required but with an exported '
                        '--pretrained-model, whose own it is)')
    parser.add_argument('--gpu', type=int, default=-1,
                        help='GPU id (-1: CPU); under mpiexec each process '
                        'uses the GPU of its local rank')
    parser.add_argument('--pretrained-model',
                        help="'cityscapes', 'ade20k', an npz file, or a "
                        'model of export_onnx.py: .onnx (ONNX Runtime) or '
                        '.xml (OpenVINO) (default: the published weights of '
                        '--dataset)')
    parser.add_argument('--split', default='val',
                        help="the split to evaluate (default 'val'); the "
                        'test splits, without labels, give predictions '
                        'only: {}'.format(flags.dataset_defaults(
                            'test_split')))
    parser.add_argument('--batchsize', type=flags.positive_int, default=1,
                        help='images read and passed to predict at a time '
                        '(default 1); results do not depend on it')
    parser.add_argument('--input-size', type=flags.input_size,
                        metavar='N', help='network input size (default: '
                        '{})'.format(flags.dataset_defaults('input_size')))
    flags.add_prediction_arguments(parser)
    parser.add_argument('--data-dir', default='auto',
                        help="dataset folder (default 'auto': "
                        '$CHAINER_DATASET_ROOT/pfnet/chainercv/DATASET)')
    parser.add_argument('--limit', type=flags.positive_int,
                        help='evaluate only the first N images')
    flags.add_inference_arguments(parser)
    parser.add_argument('--json', metavar='FILE',
                        help='also write every figure to FILE')
    parser.add_argument('--save-predictions', metavar='DIR',
                        help="write every image's prediction into DIR in "
                        "the format of the benchmark's server (Cityscapes: "
                        'label ids; ADE20K: 1 to 150; VOC: palette PNGs; '
                        'other datasets: class ids)')
    parser.add_argument('--save-color', metavar='DIR',
                        help='also write colour images of the predictions '
                        'into DIR')
    parser.add_argument('--report', metavar='DIR',
                        help='also write a report into DIR: the confusion '
                        'matrix (confusion_matrix.png, .csv), every '
                        "image's scores (per_image.csv), pictures of the "
                        'worst images and index.html, which shows them')
    parser.add_argument('--report-worst', type=flags.non_negative_int,
                        metavar='N', help='pictures of the N worst images '
                        'in the report (default {})'.format(
                            report.DEFAULT_WORST))
    parser.add_argument('--checkpoint-interval', type=flags.non_negative_float,
                        default=30.0, metavar='SECONDS',
                        help='seconds between writes of the progress '
                        'checkpoint beside --json, --save-predictions or '
                        '--report (default 30; 0: after every batch)')
    args = parser.parse_args(argv)
    if args.model is None and not is_exported(args.pretrained_model):
        parser.error('the following arguments are required: --model')
    return args


@exit_on_user_error
def main(argv=None):
    evaluate.run(evaluate.EvaluationOptions.from_namespace(parse_args(argv)))


if __name__ == '__main__':
    main()
