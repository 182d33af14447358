"""Compare caffe2npz.py with ChainerCV's own PSPNet converter (not run in CI).

    /tmp/oracle-venv/bin/python -m crosscheck.compare_caffe2npz \\
        --chainercv-converter /tmp/oracle/chainercv_caffe2npz.py \\
        --caffe-pb2 /tmp/oracle

Needs, outside the project:

* ChainerCV's converter, ``examples/pspnet/caffe2npz.py`` of chainer/
  chainercv, saved as it is (it is not in ChainerCV's wheel).
* The ``caffe_pb2`` module it imports. ChainerCV does not ship one; generate
  it with protoc (e.g. ``python -m grpc_tools.protoc`` of grpcio-tools
  1.62, whose output runs on the oracle's protobuf 3.20) from the messages
  of hszhao/PSPNet's ``src/caffe/proto/caffe.proto`` that the converter and
  the prototxt use (NetParameter, LayerParameter, BlobProto, BNParameter,
  ConvolutionParameter...), copied from PSPNet's file rather than from this
  project's ``pspnet/caffe/caffe.proto``, so that the two readers share no
  schema.

It writes a full-size synthetic ``pspnet101_cityscapes`` caffemodel (the
layout of the released file, auxiliary branch included;
tests/helpers/caffemodel_factory.py), and the inference prototxt ChainerCV's
converter reads its layer list from, converts the file with both converters
(ChainerCV's is copied into the work folder beside a copy of
``caffe_pb2.py``, where its ``import caffe_pb2`` finds it) and checks that
every array is the same: names, dtypes and values. Then the project's npz
files (ResNet101 and a ResNet50 ADE20K model) are loaded strictly into
ChainerCV's PSPNetResNet101/50.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import chainer
from chainercv.experimental.links import PSPNetResNet101
from chainercv.experimental.links import PSPNetResNet50
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Run by the project's Python with the repository root as the working
#: directory, which ``-c`` puts on ``sys.path``.
WRITE = '''
from tests.helpers import caffemodel_factory as factory
factory.write_caffemodel({path!r}, {n_layer}, {n_class}, {size})
if {prototxt!r}:
    with open({prototxt!r}, 'w') as f:
        f.write(factory.prototxt_text({n_layer}, {n_class}, {size}))
'''


def run(args, **kwargs):
    """Run a command; return its wall time and the peak RSS (MB) of the
    children so far."""
    start = time.perf_counter()
    subprocess.run(args, check=True, **kwargs)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return elapsed, peak


def write_model(python, path, n_layer, n_class, size, prototxt=''):
    code = WRITE.format(path=path, n_layer=n_layer, n_class=n_class,
                        size=size, prototxt=prototxt)
    subprocess.run([python, '-c', code], cwd=ROOT, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--chainercv-converter', required=True)
    parser.add_argument('--caffe-pb2', required=True,
                        help='folder holding caffe_pb2.py')
    parser.add_argument('--project-python',
                        default=os.path.join(ROOT, '.venv', 'bin', 'python'))
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix='caffe2npz-oracle-')
    try:
        source = os.path.join(work, 'pspnet101_cityscapes.caffemodel')
        os.makedirs(os.path.join(work, 'weights'))
        write_model(args.project_python, source, 101, 19, 713, os.path.join(
            work, 'weights', 'pspnet101_cityscapes_713.prototxt'))
        print('synthetic caffemodel: {:.1f} MB'.format(
            os.path.getsize(source) / 1e6))

        ours = os.path.join(work, 'ours.npz')
        t_ours, _ = run([args.project_python,
                         os.path.join(ROOT, 'caffe2npz.py'), source, ours],
                        stdout=subprocess.DEVNULL)
        theirs = os.path.join(work, 'chainercv.npz')
        # The converter imports caffe_pb2 from its own folder.
        converter = os.path.join(work, 'chainercv_caffe2npz.py')
        shutil.copy(args.chainercv_converter, converter)
        shutil.copy(os.path.join(args.caffe_pb2, 'caffe_pb2.py'), work)
        t_theirs, peak = run([sys.executable, converter, source, theirs],
                             cwd=work, stdout=subprocess.DEVNULL)
        print('time: caffe2npz.py {:.1f} s, ChainerCV\'s converter {:.1f} s '
              '(peak RSS of the children so far {:.0f} MB)'.format(
                  t_ours, t_theirs, peak))

        with np.load(ours) as a, np.load(theirs) as b:
            assert sorted(a.files) == sorted(b.files), \
                set(a.files) ^ set(b.files)
            for key in a.files:
                assert a[key].dtype == b[key].dtype, key
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
            n_counters = sum(k.endswith('/N') for k in a.files)
        print('all {} arrays identical ({} of them BN batch counters)'
              .format(len(a.files), n_counters))

        model = PSPNetResNet101(19, None, (713, 713))
        chainer.serializers.load_npz(ours, model, strict=True)
        print('ResNet101 npz loads strictly into ChainerCV\'s '
              'PSPNetResNet101')
        os.remove(source)

        source50 = os.path.join(work, 'pspnet50_ADE20K.caffemodel')
        write_model(args.project_python, source50, 50, 150, 473)
        ours50 = os.path.join(work, 'ours50.npz')
        run([args.project_python, os.path.join(ROOT, 'caffe2npz.py'),
             source50, ours50], stdout=subprocess.DEVNULL)
        model = PSPNetResNet50(150, None, (473, 473))
        chainer.serializers.load_npz(ours50, model, strict=True)
        with np.load(ours50) as a:
            np.testing.assert_array_equal(model.head_conv2.b.array,
                                          a['head_conv2/b'])
        print('ResNet50 npz loads strictly into ChainerCV\'s PSPNetResNet50')
    finally:
        shutil.rmtree(work)


if __name__ == '__main__':
    main()
