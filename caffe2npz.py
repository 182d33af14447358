#!/usr/bin/env python
"""Convert one of PSPNet's original Caffe models into Chainer npz weights.

    python caffe2npz.py [--with-aux] SOURCE.caffemodel TARGET.npz

SOURCE is pspnet50_ADE20K.caffemodel, pspnet101_VOC2012.caffemodel or
pspnet101_cityscapes.caffemodel from hszhao/PSPNet. The depth, the class
count and the input size are read from the file itself; no prototxt and no
Caffe are needed. TARGET loads into PSPNetResNet50/101 (this project's and
ChainerCV's) and into demo.py and eval_semantic_segmentation.py through
--pretrained-model. With --with-aux the auxiliary training branch
(conv4_24 / conv4_7, its BN, conv6_1) is written too, as the training
chain's auxiliary head: train_multi.py --pretrained-model TARGET then
fine-tunes from every trained layer.
"""

import time

from pspnet.caffe import convert_caffemodel
from pspnet.cli import ArgumentParser
from pspnet.cli import exit_on_user_error


def parse_args(argv=None):
    parser = ArgumentParser(
        description='Convert a PSPNet caffemodel (hszhao/PSPNet) into npz '
        'weights for PSPNetResNet50/101.')
    parser.add_argument('source', metavar='SOURCE.caffemodel')
    parser.add_argument('target', metavar='TARGET.npz')
    parser.add_argument('--compress', action='store_true',
                        help='deflate the npz (a few percent smaller, several '
                        'times slower to write)')
    parser.add_argument('--with-aux', action='store_true',
                        help='also write the auxiliary training branch '
                        '(conv4_24/conv4_7, its BN, conv6_1) for fine-tuning '
                        'with train_multi.py --pretrained-model')
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    report = convert_caffemodel(args.source, args.target,
                                compress=args.compress,
                                with_aux=args.with_aux)
    for line in report.lines():
        print(line)
    print('done in {:.1f} s'.format(time.perf_counter() - start))


if __name__ == '__main__':
    main()
