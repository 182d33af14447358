"""Compare the project's PSPNet with ChainerCV's (run with the oracle venv).

    /tmp/oracle-venv/bin/python -m crosscheck.compare_model

Checks, for both depths: the saved parameter trees are identical, npz files
load strictly both ways, and on the same random weights the labels agree
on small (canvas) and large (tiled) images and with multiple scales.
"""

import os
import tempfile

import chainer
from chainercv.experimental.links import PSPNetResNet50 as CVResNet50
from chainercv.experimental.links import PSPNetResNet101 as CVResNet101
import numpy as np

from pspnet import PSPNetResNet50, PSPNetResNet101
from pspnet.pretrained import link_shapes
from tests.helpers.random_weights import sensitive_model
from tests.helpers.random_weights import smooth_image


def main():
    rng = np.random.RandomState(0)
    tmp = tempfile.mkdtemp()
    for depth, ours_cls, cv_cls in ((50, PSPNetResNet50, CVResNet50),
                                    (101, PSPNetResNet101, CVResNet101)):
        n_class, size = 7, (97, 97)
        ours = sensitive_model(ours_cls, n_class, size, rng)
        cv = cv_cls(n_class, input_size=size)
        ours_path = os.path.join(tmp, 'ours%d.npz' % depth)
        cv_path = os.path.join(tmp, 'cv%d.npz' % depth)
        chainer.serializers.save_npz(ours_path, ours)
        chainer.serializers.load_npz(ours_path, cv, strict=True)
        chainer.serializers.save_npz(cv_path, cv)
        ours2 = ours_cls(n_class, input_size=size)
        chainer.serializers.load_npz(cv_path, ours2, strict=True)
        a, b = dict(np.load(ours_path)), dict(np.load(cv_path))
        assert sorted(a) == sorted(b), set(a) ^ set(b)
        assert all(a[k].shape == b[k].shape for k in a)
        assert link_shapes(ours) == {k: v.shape for k, v in b.items()}
        print('ResNet%d: %d arrays, keys and shapes identical, strict load '
              'both ways OK' % (depth, len(a)))

        if depth == 101:
            continue
        for hw, scales in (((60, 80), None), ((97, 97), None),
                           ((150, 230), None), ((240, 130), None),
                           ((70, 90), (0.5, 1.0, 1.5))):
            img = smooth_image(rng, hw)
            cv.scales = scales
            ours2.scales = scales
            l1 = cv.predict([img])[0]
            l2 = ours2.predict([img])[0]
            agree = (l1 == l2).mean()
            s1 = cv._tile_predict(img - 0) if scales is None else None
            print('  predict %s scales=%s: labels agree on %.5f of pixels, '
                  '%d classes present' % (hw, scales, agree,
                                          len(np.unique(l1))))
            assert agree >= 0.999, agree
            if s1 is not None:
                s2 = chainer.backends.cuda.to_cpu(ours2.predict_scores(img))
                print('    max score difference %.2e' % abs(s1 - s2).max())


if __name__ == '__main__':
    main()
