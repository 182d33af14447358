"""Compare the fast inference path with ChainerCV (run with the oracle venv).

    /tmp/oracle-venv/bin/python -m crosscheck.compare_fast_inference

On the same random weights, for both depths: the fast path's logits
against ChainerCV's ``forward`` (relative error), and the labels of
``predict`` (which takes the fast path on the CPU) against ChainerCV's
``predict`` on small images (one padded window), large images (sliding
windows) and with several scales. Labels must agree on >= 99.9 % of the
pixels. The classifier is amplified so that many classes meet in every
image and small differences would flip labels.
"""

import os
import tempfile

import chainer
from chainercv.experimental.links import PSPNetResNet50 as CVResNet50
from chainercv.experimental.links import PSPNetResNet101 as CVResNet101
import numpy as np

from pspnet import PSPNetResNet50, PSPNetResNet101
from pspnet.inference import fast_forward, unsupported_reason
from tests.helpers.random_weights import sensitive_model
from tests.helpers.random_weights import smooth_image


def main():
    rng = np.random.RandomState(0)
    tmp = tempfile.mkdtemp()
    worst = 1.0
    for depth, ours_cls, cv_cls, size, cases in (
            (50, PSPNetResNet50, CVResNet50, (97, 97), (
                ((60, 80), None), ((97, 97), None), ((150, 230), None),
                ((240, 130), None), ((70, 90), (0.5, 1.0, 1.5)))),
            (101, PSPNetResNet101, CVResNet101, (129, 129), (
                ((100, 129), None), ((200, 310), None)))):
        n_class = 7
        ours = sensitive_model(ours_cls, n_class, size, rng)
        path = os.path.join(tmp, 'ours{}.npz'.format(depth))
        chainer.serializers.save_npz(path, ours, compression=False)
        cv = cv_cls(n_class, input_size=size,
                    initialW=chainer.initializers.Zero())
        chainer.serializers.load_npz(path, cv, strict=True)

        x = (smooth_image(rng, size) - ours.mean)[None]
        x = np.concatenate([x, x[:, :, ::-1]])
        assert unsupported_reason(ours, x) is None
        with chainer.using_config('train', False), \
                chainer.no_backprop_mode():
            expected = cv.forward(x).array
        got = fast_forward(ours, x)
        error = np.abs(got - expected).max() / np.abs(expected).max()
        agree = (got.argmax(1) == expected.argmax(1)).mean()
        print('ResNet{} @ {}: fast forward vs ChainerCV forward: relative '
              'error {:.1e}, labels agree on {:.5f}'.format(
                  depth, size, error, agree))
        assert error <= 1e-4, error
        assert agree >= 0.999, agree

        for hw, scales in cases:
            img = smooth_image(rng, hw)
            cv.scales = scales
            ours.scales = scales
            expected = cv.predict([img])[0]
            got = ours.predict([img])[0]
            agree = (got == expected).mean()
            worst = min(worst, agree)
            print('  predict {} scales={}: labels agree on {:.5f} of pixels, '
                  '{} classes present'.format(hw, scales, agree,
                                              len(np.unique(expected))))
            assert agree >= 0.999, agree
    print('OK: worst label agreement {:.5f}'.format(worst))


if __name__ == '__main__':
    main()
