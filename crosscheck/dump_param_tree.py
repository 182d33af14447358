"""Dump the parameter tree of ChainerCV's PSPNet (run with the oracle venv).

    /tmp/oracle-venv/bin/python -m crosscheck.dump_param_tree

Writes ``tests/data/chainercv_param_tree_resnet{50,101}_n7.json``: the name
and shape of every array ``chainer.serializers.save_npz`` writes for
ChainerCV 0.13.1's ``PSPNetResNet50/101(7, input_size=(97, 97))``. The
project's tests compare the project's link against these facts without
needing ChainerCV.
"""

import json
import os
import tempfile

import chainer
import numpy as np
from chainercv.experimental.links import PSPNetResNet101
from chainercv.experimental.links import PSPNetResNet50

N_CLASS = 7
INPUT_SIZE = (97, 97)
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..',
                    'tests', 'data')


def main():
    for depth, cls in ((50, PSPNetResNet50), (101, PSPNetResNet101)):
        model = cls(N_CLASS, input_size=INPUT_SIZE)
        # Materialize any lazily initialized parameter before saving.
        x = np.zeros((1, 3) + INPUT_SIZE, dtype=np.float32)
        with chainer.using_config('train', False), \
                chainer.no_backprop_mode():
            model(x)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'model.npz')
            chainer.serializers.save_npz(path, model, compression=False)
            with np.load(path) as npz:
                tree = {name: list(npz[name].shape)
                        for name in sorted(npz.files)}
        out = os.path.join(DATA, 'chainercv_param_tree_resnet{}_n{}.json'
                           .format(depth, N_CLASS))
        with open(out, 'w') as f:  # one array per line, for readable diffs
            f.write('{\n' + ',\n'.join(
                '{}: {}'.format(json.dumps(name), json.dumps(shape))
                for name, shape in tree.items()) + '\n}\n')
        print('wrote {} ({} arrays)'.format(os.path.normpath(out), len(tree)))


if __name__ == '__main__':
    main()
