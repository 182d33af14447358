"""Compare training pieces with ChainerCV's (run with the oracle venv).

    /tmp/oracle-venv/bin/python -m crosscheck.compare_training \\
        [MODEL_FINAL.npz]

1. Augmentation geometry: the project's rotation and scaling against
   ``chainercv.transforms.rotate`` / ``resize`` (what ChainerCV's
   train_multi.py Transform calls): same direction, same fill, labels by
   nearest sampling. The project rotates about the exact image centre
   ((W - 1) / 2, (H - 1) / 2), ChainerCV about (W / 2, H / 2): half a pixel
   apart, so a few pixels along class borders differ.
2. With a ``model_final.npz`` written by train_multi.py: it loads strictly
   into ChainerCV's PSPNetResNet50/101 and both predict the same labels.
"""

import sys

import chainer
from chainercv import transforms as cv_transforms
from chainercv.experimental.links import PSPNetResNet50 as CVResNet50
from chainercv.experimental.links import PSPNetResNet101 as CVResNet101
import numpy as np
import PIL

from pspnet import pretrained
from pspnet.links import PSPNetResNet101, PSPNetResNet50
from pspnet.training import augmentation


def blocks(rng, shape, values, block):
    h, w = shape
    small = rng.choice(values, size=(-(-h // block), -(-w // block)))
    return np.repeat(np.repeat(small, block, 0), block, 1)[:h, :w]


def compare_geometry():
    rng = np.random.RandomState(0)
    label = blocks(rng, (120, 160), np.array([0, 4, 9, 18], np.int32), 20)
    img = np.stack([label * 10.0 + 20, label * 5.0 + 60, 200 - label * 7.0]
                   ).astype(np.float32)
    for angle in (-9.5, 3.0, 10.0):
        ours_img, ours_label = augmentation.rotate(img, label, angle)
        cv_img = cv_transforms.rotate(img, angle, expand=False)
        cv_label = cv_transforms.rotate(
            label[None], angle, expand=False,
            interpolation=PIL.Image.NEAREST, fill=-1)[0]
        same = (ours_label == cv_label).mean()
        print('rotate {:+.1f} deg: labels equal on {:.2%} of pixels, image '
              'mean |diff| {:.3f}, ignored pixels {} vs {}'.format(
                  angle, same, np.abs(ours_img - cv_img).mean(),
                  (ours_label == -1).sum(), (cv_label == -1).sum()))
        assert same > 0.97
    for factor in (0.5, 1.37, 2.0):
        ours_img, ours_label = augmentation.scale(img, label, factor)
        size = ours_img.shape[1:]
        cv_img = cv_transforms.resize(img, size, PIL.Image.BICUBIC)
        cv_label = cv_transforms.resize(label[None], size,
                                        PIL.Image.NEAREST)[0]
        print('scale x{}: labels equal on {:.2%}, image max |diff| {:.4f}'
              .format(factor, (ours_label == cv_label).mean(),
                      np.abs(ours_img - cv_img).max()))
        assert (ours_label == cv_label).all()


def compare_model_file(path):
    shapes = pretrained.read_npz_shapes(path)
    n_class = shapes['head_conv2/W'][0]
    deep = any(k.startswith('extractor/res4/b22/') for k in shapes)
    ours = (PSPNetResNet101 if deep else PSPNetResNet50)(
        n_class=n_class, pretrained_model=path, input_size=(97, 97))
    theirs = (CVResNet101 if deep else CVResNet50)(
        n_class=n_class, pretrained_model=path, input_size=(97, 97))
    ours.fast_inference = False
    img = np.random.RandomState(1).uniform(0, 255, (3, 120, 150)).astype(
        np.float32)
    with chainer.using_config('train', False):
        a = ours.predict([img])[0]
        b = theirs.predict([img])[0]
    print('{} loads into ChainerCV ({} classes); labels equal on {:.2%} of '
          'pixels'.format(path, n_class, (a == b).mean()))
    assert (a == b).mean() > 0.999


if __name__ == '__main__':
    compare_geometry()
    if len(sys.argv) > 1:
        compare_model_file(sys.argv[1])
    print('ok')
