"""CPU inference speed and memory of PSPNet, against the GEMM limit.

    .venv/bin/python -m benchmarks.bench_inference --json bench.json

For PSPNetResNet101 at 713 and PSPNetResNet50 at 473, batch 1 and 2, it
times the forward pass (logits at input size) of

- ``fast``: the numpy path of :mod:`pspnet.inference` (what ``predict``
  uses on the CPU),
- ``plain``: the project's Chainer ``forward`` (``--skip-plain``),
- ``chainercv``: ChainerCV 0.13.1 run by another Python
  (``--chainercv-python``, default the oracle venv; ``--skip-chainercv``),
- ``torch``: a PyTorch twin of the network (``benchmarks/torch_twin.py``)
  run by a Python that has torch (``--torch-python``; ``--skip-torch``),
- ``onnxruntime`` and ``openvino``: the twin exported to ONNX
  (``torch.onnx.export``) and run by ONNX Runtime and by OpenVINO (float32
  inference precision, latency hint) from a Python that has torch, onnx,
  onnxruntime and openvino (``--anchor-python``, default
  ``/tmp/anchor-venv/bin/python``; skipped when there is none, or with
  ``--skip-anchors``),

all on the same random weights and input. Every measurement runs in a
fresh child process (``--rounds N`` runs the implementations N times in
turn, each time in fresh processes; the best time counts), which
reports its peak resident memory (VmHWM, the model included, its
gradient arrays freed with ``cleargrads()`` as an inference script
would) and its logits; the logits of the others are
compared with the fast path's (relative error, label agreement).

The float32 GEMM throughput of numpy's matmul and of the fast path's GEMM
(:mod:`pspnet.inference.blas`) is measured in the same run (4096^3,
before and after the children; the best is used) and gives the GEMM
limit ``2 * MACs / throughput``, the time the network's multiply-adds
need at that speed. Finally ``predict`` is timed on one 1024x2048 image
(``--predict-size``).

With ``--gpu N`` it times the plain Chainer path on that GPU instead
(CuPy; ResNet101 at 713 and ResNet50 at 473, batch 1 and 2, the GPU
memory pool's size as peak memory, logits against the CPU fast path) and
``predict`` on the 1024x2048 image there.

Thread counts follow the environment (``OPENBLAS_NUM_THREADS``; torch
uses its default), and so do the kernels of numpy's OpenBLAS
(``OPENBLAS_CORETYPE``, which plain Chainer and ChainerCV run on) unless
``--openblas-coretype`` sets them for every process of the run: on AMD
Zen 4/5 numpy's OpenBLAS 0.3.20 needs ``SkylakeX`` (``avx512``) for
AVX-512, about twice the GEMM speed of ``Haswell`` (see
``benchmarks/openblas_coretype.py``). The fast path's GEMM picks its kernels
from the CPU (``PSPNET_BLAS_CORETYPE`` overrides). Close other work while
measuring: the children's CPU time over wall time shows how much of the
machine they got.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

# Neither imports numpy (whose import fixes OpenBLAS's kernels).
from benchmarks import openblas_coretype
from benchmarks.json_results import write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SIZES = {'resnet50': 473, 'resnet101': 713}
DEFAULT_CHAINERCV_PYTHON = '/tmp/oracle-venv/bin/python'
DEFAULT_TORCH_PYTHONS = ('/tmp/torch-venv/bin/python',
                         '/tmp/anchor-venv/bin/python')
DEFAULT_ANCHOR_PYTHON = '/tmp/anchor-venv/bin/python'
ANCHORS = ('onnxruntime', 'openvino')
N_CLASS = 19
MODELS = {}  # depth -> class, filled by main()
LABELS = {'fast': 'fast (numpy)', 'plain': 'plain Chainer',
          'chainercv': 'ChainerCV 0.13.1', 'torch': 'PyTorch twin',
          'onnxruntime': 'ONNX Runtime', 'openvino': 'OpenVINO'}


# ---------------------------------------------------------------- child

def _rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def _peak_mb():
    # VmHWM starts afresh at exec, whereas ru_maxrss keeps the parent's
    # peak on Linux.
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load_model(impl, spec):
    depth, size = spec['depth'], (spec['size'], spec['size'])
    if impl == 'chainercv':
        import chainer
        from chainercv.experimental.links import PSPNetResNet50
        from chainercv.experimental.links import PSPNetResNet101
        cls = PSPNetResNet50 if depth == 50 else PSPNetResNet101
        model = cls(n_class=spec['n_class'], input_size=size,
                    initialW=chainer.initializers.Zero())
        chainer.serializers.load_npz(spec['weights'], model, strict=True)
        model.cleargrads()
        return model
    if impl == 'torch':
        from benchmarks import torch_twin  # needs torch: its Python only
        return torch_twin.load(spec['weights'], size)
    if impl == 'onnxruntime':
        import onnxruntime
        return onnxruntime.InferenceSession(
            spec['onnx'], providers=['CPUExecutionProvider'])
    if impl == 'openvino':
        import openvino
        return openvino.Core().compile_model(
            spec['onnx'], 'CPU', {'INFERENCE_PRECISION_HINT': 'f32',
                                  'PERFORMANCE_HINT': 'LATENCY'})
    from pspnet import PSPNetResNet101
    from pspnet import PSPNetResNet50
    cls = PSPNetResNet50 if depth == 50 else PSPNetResNet101
    model = cls(n_class=spec['n_class'], pretrained_model=spec['weights'],
                input_size=size)
    model.fast_inference = impl == 'fast'
    # Chainer fills every gradient with NaN when a link is built (as much
    # memory as the weights); inference needs none.
    model.cleargrads()
    return model


def _forward_fn(impl, model, x):
    import numpy as np
    if impl == 'fast':
        from pspnet.inference import fast_forward
        return lambda: fast_forward(model, x)
    if impl == 'torch':
        import torch

        def run():
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()
        return run
    if impl in ANCHORS:
        # The export has batch 1: the images of a batch run one by one.
        if impl == 'onnxruntime':
            def one(image):
                return model.run(None, {'x': image})[0]
        else:
            request = model.create_infer_request()

            def one(image):
                return request.infer([image])[0].copy()
        return lambda: np.concatenate([one(x[i:i + 1])
                                       for i in range(len(x))])
    import chainer

    def run():
        with chainer.using_config('train', False), \
                chainer.no_backprop_mode():
            return np.asarray(model.forward(x).array)
    return run


def run_child(spec):
    """Measure one implementation as the spec says; returns a dict."""
    import numpy as np
    impl = spec['impl']
    if impl == 'export-onnx':
        from benchmarks import torch_twin  # needs torch: its Python only
        torch_twin.export_onnx(spec['weights'], (spec['size'],) * 2,
                               spec['onnx'])
        return {}
    model = _load_model(impl.replace('predict-', ''), spec)
    result = {'rss_before_mb': _rss_mb()}
    if impl.startswith('predict-'):
        img = np.load(spec['input'])
        run = lambda: model.predict([img])[0]  # NOQA
    else:
        x = np.load(spec['input'])[:spec['batch']]
        run = _forward_fn(impl, model, x)
    for _ in range(spec['warmup']):
        run()
    walls, cpus = [], []
    for _ in range(spec['repeat']):
        wall, cpu = time.perf_counter(), time.process_time()
        out = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    if spec.get('output'):
        # Labels of predict; the first image's logits of a forward pass.
        np.save(spec['output'], out if impl.startswith('predict-')
                else out[:1])
    result.update(times_s=walls, cpu_s=cpus, peak_mb=_peak_mb(),
                  openblas_core=openblas_coretype.loaded_core_name())
    if impl in ('fast', 'predict-fast'):
        from pspnet.inference import blas
        result['fast_gemm'] = blas.description()
    if impl == 'torch':
        import torch
        result['torch_threads'] = torch.get_num_threads()
        result['torch_version'] = torch.__version__
    if impl == 'onnxruntime':
        import onnxruntime
        result['version'] = onnxruntime.__version__
    if impl == 'openvino':
        import openvino
        result['version'] = openvino.__version__
    return result


# --------------------------------------------------------------- parent

def gemm_gflops(n=4096, repeat=5):
    """Best float32 GEMM throughput, GFLOP/s, of numpy's matmul and of the
    fast path's GEMM (:mod:`pspnet.inference.blas`), as a dict."""
    import numpy as np
    from pspnet.inference import blas
    rng = np.random.RandomState(0)
    a = rng.rand(n, n).astype(np.float32)
    b = rng.rand(n, n).astype(np.float32)
    out = np.empty_like(a)
    results = {}
    for name, run in (('numpy', lambda: np.matmul(a, b, out=out)),
                      ('fast', lambda: blas.gemm(a, b, out))):
        run()
        best = float('inf')
        for _ in range(repeat):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        results[name] = 2 * n ** 3 / best / 1e9
    return results


def network_macs(model, size):
    """Multiply-adds of the model's convolutions at a square input."""
    def conv(link, s):
        out_channels, in_channels, kh, kw = link.W.shape
        o = (s + 2 * link.pad[0] - link.dilate[0] * (kh - 1) - 1) \
            // link.stride[0] + 1
        return out_channels * in_channels * kh * kw * o * o, o

    total, s = 0, size
    extractor = model.extractor
    for name in ('conv1_1', 'conv1_2', 'conv1_3'):
        macs, s = conv(getattr(extractor, name).conv, s)
        total += macs
    s = -(-(s + 2 - 3) // 2) + 1  # max pooling, cover_all
    for stage in ('res2', 'res3', 'res4', 'res5'):
        for unit in getattr(extractor, stage).units:
            total += conv(unit.conv1.conv, s)[0]
            macs, out = conv(unit.conv2.conv, s)
            total += macs + conv(unit.conv3.conv, out)[0]
            if hasattr(unit, 'residual_conv'):
                total += conv(unit.residual_conv.conv, s)[0]
            s = out
    for branch, ksize in zip(model.ppm, model.ppm.ksizes):
        total += conv(branch.conv, s // ksize[0])[0]
    total += conv(model.head_conv1.conv, s)[0]
    total += conv(model.head_conv2, s)[0]
    return total


def smooth_images(rng, n, size):
    """Float32 RGB images in [0, 255] with blobs, (n, 3, H, W)."""
    import cv2
    import numpy as np
    H, W = size
    imgs = []
    for _ in range(n):
        small = rng.uniform(0, 255, (max(2, H // 32), max(2, W // 32), 3))
        img = cv2.resize(small.astype(np.float32), (W, H),
                         interpolation=cv2.INTER_CUBIC)
        imgs.append(np.clip(img, 0, 255).transpose(2, 0, 1))
    return np.stack(imgs).astype(np.float32)


def make_weights(depth, path, rng):
    """Save random weights to ``path``: Chainer's default initialization
    for the convolutions, batch normalizations far from identities (scale
    and statistics drawn at random) so that folding them is exercised.

    Statistics calibrated on a few images would be closer to trained
    weights but ill-conditioned: the pyramid's 1x1 bin sees one value per
    image, its variances come out near zero and amplify rounding in any
    implementation (float32 results then differ from float64 by 1e-4).
    """
    import chainer
    from pspnet import PSPNetResNet101
    from pspnet import PSPNetResNet50
    cls = PSPNetResNet50 if depth == 50 else PSPNetResNet101
    model = cls(N_CLASS, input_size=161)
    for _, link in model.namedlinks():
        if isinstance(link, chainer.links.BatchNormalization):
            link.gamma.array[:] = rng.uniform(0.5, 1.5, link.gamma.shape)
            link.beta.array[:] = rng.uniform(-0.2, 0.2, link.beta.shape)
            link.avg_mean[:] = rng.uniform(-0.2, 0.2, link.avg_mean.shape)
            link.avg_var[:] = rng.uniform(0.5, 2, link.avg_var.shape)
    chainer.serializers.save_npz(path, model, compression=False)


def spawn(python, spec, module='benchmarks.bench_inference'):
    """Run one measurement in a fresh process of ``python`` (which may be
    another environment's, with ChainerCV or torch): ``python -m module
    --child SPEC`` from the repository root; returns the dict the child
    prints after ``RESULT``, or ``{'error': ...}``."""
    cmd = [python, '-m', module, '--child', json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)
    for line in proc.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[len('RESULT '):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {'error': 'exit {}: {}'.format(proc.returncode, ' | '.join(tail))}


def find_torch_python(explicit):
    candidates = [explicit] if explicit else \
        [sys.executable] + list(DEFAULT_TORCH_PYTHONS)
    for python in candidates:
        if python and os.path.exists(python) and subprocess.call(
                [python, '-c', 'import torch, numpy'],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0:
            return python
    return None


def find_anchor_python(explicit):
    python = explicit or DEFAULT_ANCHOR_PYTHON
    if os.path.exists(python) and subprocess.call(
            [python, '-c', 'import torch, onnx, onnxruntime, openvino'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0:
        return python
    return None


def merge_rounds(results):
    """One result from those of several fresh processes: their times
    together, the highest peak memory."""
    good = [r for r in results if 'error' not in r]
    if not good:
        return results[0]
    merged = dict(good[0])
    merged['times_s'] = [t for r in good for t in r['times_s']]
    merged['cpu_s'] = [t for r in good for t in r['cpu_s']]
    merged['peak_mb'] = max(r['peak_mb'] for r in good)
    merged['processes'] = len(good)
    return merged


def compare(path, reference_path):
    import numpy as np
    got, ref = np.load(path), np.load(reference_path)
    return {'rel_error': float(np.abs(got - ref).max() / np.abs(ref).max()),
            'label_agreement': float((got.argmax(1) == ref.argmax(1))
                                     .mean())}


def parse_models(names):
    models = []
    for name in names:
        base, _, size = name.partition('@')
        if base not in DEFAULT_SIZES:
            raise SystemExit('error: unknown model {!r}; use resnet50 or '
                             'resnet101, optionally @SIZE'.format(name))
        models.append((base, int(size) if size else DEFAULT_SIZES[base]))
    return models


def print_config(entry):
    print('\n{model} @ {size}, batch {batch}: {gmacs:.0f} GMACs, GEMM limit '
          '{limit:.2f} s per image'.format(
              gmacs=entry['macs'] / 1e9, limit=entry['gemm_limit_s'],
              **entry))
    print('  {:<17} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}'.format(
        'implementation', 's/image', 'vs limit', 'vs fast', 'cpu/wall',
        'load MB', 'peak MB', 'rel.err', 'labels'))
    fast = entry['results'].get('fast', {})
    for impl, r in entry['results'].items():
        if 'error' in r:
            print('  {:<17} failed: {}'.format(LABELS[impl], r['error']))
            continue
        per_image = min(r['times_s']) / entry['batch']
        vs_fast = ('{:.2f}x'.format(per_image * entry['batch']
                                    / min(fast['times_s']))
                   if 'times_s' in fast else '-')
        i = r['times_s'].index(min(r['times_s']))
        agreement = r.get('vs_fast', {})
        print('  {:<17} {:>9.2f} {:>7.2f}x {:>8} {:>8.2f} {:>8.0f} {:>8.0f} '
              '{:>9} {:>8}'.format(
                  LABELS[impl], per_image, per_image / entry['gemm_limit_s'],
                  vs_fast, r['cpu_s'][i] / r['times_s'][i],
                  r['rss_before_mb'], r['peak_mb'],
                  '{:.1e}'.format(agreement['rel_error'])
                  if agreement else '-',
                  '{:.2%}'.format(agreement['label_agreement'])
                  if agreement else '-'))


def goals(report):
    """The speed goals, each as (text, bool or None when not measured)."""
    checks = []
    per_image = {}
    for entry in report['configs']:
        fast = entry['results'].get('fast', {})
        if 'times_s' not in fast:
            continue
        name = '{model}@{size}'.format(**entry)
        t = min(fast['times_s']) / entry['batch']
        per_image[name, entry['batch']] = t
        checks.append(('{} batch {}: fast <= 1.5x GEMM limit ({:.2f}x)'
                       .format(name, entry['batch'],
                               t / entry['gemm_limit_s']),
                       t <= 1.5 * entry['gemm_limit_s']))
        if entry['batch'] == 1:
            checks.append(('{} batch 1: peak memory <= 1.2 GB ({:.0f} MB)'
                           .format(name, fast['peak_mb']),
                           fast['peak_mb'] <= 1.2 * 1024))
        anchors = [min(entry['results'][impl]['times_s'])
                   for impl in ANCHORS
                   if 'times_s' in entry['results'].get(impl, {})]
        if anchors and entry['batch'] == 1:
            ratio = min(fast['times_s']) / min(anchors)
            checks.append(('{} batch 1: fast <= 0.75x the faster of ONNX '
                           'Runtime and OpenVINO ({:.2f}x)'.format(
                               name, ratio), ratio <= 0.75))
            checks.append(('{} batch 1: peak memory <= 1 GB ({:.0f} MB)'
                           .format(name, fast['peak_mb']),
                           fast['peak_mb'] <= 1024))
        for impl, factor in (('chainercv', 3.8), ('torch', 1.0)):
            other = entry['results'].get(impl, {})
            if 'times_s' in other:
                ratio = min(other['times_s']) / min(fast['times_s'])
                checks.append(('{} batch {}: {} / fast >= {} ({:.2f}x)'
                               .format(name, entry['batch'], LABELS[impl],
                                       factor, ratio), ratio >= factor))
        for impl, r in entry['results'].items():
            if 'vs_fast' in r:
                agree = r['vs_fast']['label_agreement']
                checks.append(('{} batch {}: labels of {} equal on {:.3%} '
                               '>= 99.9 %'.format(name, entry['batch'],
                                                  LABELS[impl], agree),
                               agree >= 0.999))
    for (name, batch), t in sorted(per_image.items()):
        if batch == 2 and (name, 1) in per_image:
            ratio = t / per_image[name, 1]
            checks.append(('{}: batch 2 per image / batch 1 = {:.2f} '
                           '(<= 1.05)'.format(name, ratio), ratio <= 1.05))
    return checks


def gpu_benchmark(args):
    """Forward and predict times of the Chainer path on one GPU."""
    import chainer
    import cupy
    import numpy as np
    from pspnet import PSPNetResNet101
    from pspnet import PSPNetResNet50
    from pspnet.device import use_gpu
    from pspnet.inference import fast_forward
    MODELS.update({50: PSPNetResNet50, 101: PSPNetResNet101})
    pool = cupy.get_default_memory_pool()
    name = cupy.cuda.runtime.getDeviceProperties(args.gpu)['name'].decode()
    print('GPU {}: {}, CuPy {}, cuDNN {}'.format(
        args.gpu, name, cupy.__version__,
        'on' if chainer.backends.cuda.cudnn_enabled else 'off'))
    report = {'gpu': name, 'cupy': cupy.__version__,
              'cudnn': chainer.backends.cuda.cudnn_enabled, 'configs': []}
    rng = np.random.RandomState(0)
    tmp = tempfile.mkdtemp(prefix='bench_inference_gpu_')

    def timed(run, repeat):
        run()  # warm-up: kernel compilation, memory pool
        cupy.cuda.Device(args.gpu).synchronize()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            run()
            cupy.cuda.Device(args.gpu).synchronize()
            times.append(time.perf_counter() - start)
        return min(times)

    print('\n  model               batch  s/image  img/s  GPU pool MB  '
          'rel.err vs CPU')
    for model_name, size in parse_models(args.models):
        depth = int(model_name[len('resnet'):])
        path = os.path.join(tmp, model_name + '.npz')
        make_weights(depth, path, rng)
        model = MODELS[depth](N_CLASS, pretrained_model=path,
                              input_size=size)
        x = smooth_images(rng, max(args.batch), (size, size)) - np.array(
            [123.68, 116.779, 103.939], np.float32)[:, None, None]
        cpu_logits = fast_forward(model, x[:1])
        use_gpu(model, args.gpu)
        for batch in args.batch:
            x_gpu = cupy.asarray(x[:batch])
            pool.free_all_blocks()

            def run():
                with chainer.using_config('train', False), \
                        chainer.no_backprop_mode():
                    return model.forward(x_gpu).array
            seconds = timed(run, args.repeat)
            logits = cupy.asnumpy(run()[:1])
            rel = float(np.abs(logits - cpu_logits).max()
                        / np.abs(cpu_logits).max())
            entry = {'model': 'PSPNetResNet{}'.format(depth), 'size': size,
                     'batch': batch, 's_per_image': seconds / batch,
                     'pool_mb': pool.total_bytes() / 2 ** 20,
                     'rel_err_vs_cpu': rel}
            report['configs'].append(entry)
            print('  {:<18} {:>6} {:>8.3f} {:>6.1f} {:>12.0f} {:>9.1e}'
                  .format('{} @ {}'.format(entry['model'], size), batch,
                          entry['s_per_image'], 1 / entry['s_per_image'],
                          entry['pool_mb'], rel), flush=True)
        model.to_cpu()
    if args.predict_size != 'none':
        H, W = (int(v) for v in args.predict_size.split('x'))
        model_name, size = parse_models(
            [args.predict_model or args.models[0]])[0]
        depth = int(model_name[len('resnet'):])
        model = use_gpu(MODELS[depth](
            N_CLASS, pretrained_model=os.path.join(tmp, model_name + '.npz'),
            input_size=size), args.gpu)
        img = smooth_images(rng, 1, (H, W))[0]
        seconds = timed(lambda: model.predict([img]), 1)
        report['predict'] = {'model': 'PSPNetResNet{}'.format(depth),
                             'size': size, 'image': [H, W],
                             'seconds': seconds}
        print('\npredict on a {}x{} image, PSPNetResNet{} @ {} (sliding '
              'windows and flips): {:.2f} s'.format(H, W, depth, size,
                                                    seconds))
    if args.json:
        write_json(args.json, report)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 2)[2])
    parser.add_argument('--models', nargs='+',
                        default=['resnet101@713', 'resnet50@473'],
                        help='resnet50 or resnet101, optionally @SIZE')
    parser.add_argument('--batch', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--repeat', type=int, default=3,
                        help='timed forward passes of fast and torch, after '
                        'one warm-up pass (the best counts)')
    parser.add_argument('--slow-repeat', type=int, default=1,
                        help='timed passes of plain and ChainerCV, no '
                        'warm-up')
    parser.add_argument('--json', metavar='OUT', help='write the results')
    parser.add_argument('--skip-plain', action='store_true')
    parser.add_argument('--skip-chainercv', action='store_true')
    parser.add_argument('--skip-torch', action='store_true')
    parser.add_argument('--skip-anchors', action='store_true',
                        help='skip ONNX Runtime and OpenVINO')
    parser.add_argument('--anchor-python',
                        help='a Python with torch, onnx, onnxruntime and '
                        'openvino (default: {})'.format(
                            DEFAULT_ANCHOR_PYTHON))
    parser.add_argument('--rounds', type=int, default=1,
                        help='run every implementation this many times, in '
                        'turn, each in a fresh process')
    parser.add_argument('--chainercv-python', default=DEFAULT_CHAINERCV_PYTHON,
                        help='a Python with chainercv 0.13.1')
    parser.add_argument('--torch-python',
                        help='a Python with torch and numpy (default: this '
                        'one or /tmp/torch-venv/bin/python if they have '
                        'torch)')
    parser.add_argument('--predict-size', default='1024x2048',
                        help='HxW of the image predict is timed on; "none" '
                        'skips it')
    parser.add_argument('--predict-model', default=None,
                        help='the --models entry predict uses (default: the '
                        'first)')
    parser.add_argument('--predict-compare', action='store_true',
                        help='also time predict with plain Chainer and '
                        'ChainerCV (minutes each)')
    parser.add_argument('--openblas-coretype', default='env',
                        help='OpenBLAS kernels for all processes: "env" '
                        'keeps OPENBLAS_CORETYPE as it is, "avx512" sets '
                        'SkylakeX where the CPU has AVX-512 (AMD), anything '
                        'else is set as it is (Haswell, SkylakeX...)')
    parser.add_argument('--gpu', type=int, default=None, metavar='N',
                        help='time the Chainer path on GPU N (CuPy) instead '
                        'of the CPU implementations')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gpu is not None:
        return gpu_benchmark(args)
    if args.child:
        result = run_child(json.loads(args.child))
        print('RESULT ' + json.dumps(result))
        return
    # Before numpy is imported here, and inherited by the children.
    if args.openblas_coretype == 'avx512':
        coretype = openblas_coretype.avx512_coretype()
        if coretype:
            os.environ['OPENBLAS_CORETYPE'] = coretype
        else:
            print('--openblas-coretype avx512: this CPU gets AVX-512 '
                  'kernels from OpenBLAS anyway, or has none; kept the '
                  'environment')
    elif args.openblas_coretype != 'env':
        os.environ['OPENBLAS_CORETYPE'] = args.openblas_coretype

    import chainer
    import numpy as np
    from pspnet import PSPNetResNet101
    from pspnet import PSPNetResNet50
    MODELS.update({50: PSPNetResNet50, 101: PSPNetResNet101})
    models = parse_models(args.models)
    python = sys.executable
    cv_python = None
    if not args.skip_chainercv:
        if os.path.exists(args.chainercv_python):
            cv_python = args.chainercv_python
        else:
            print('ChainerCV skipped: {} not found (--chainercv-python)'
                  .format(args.chainercv_python))
    torch_python = None if args.skip_torch else find_torch_python(
        args.torch_python)
    if not args.skip_torch and torch_python is None:
        print('PyTorch skipped: no Python with torch found (--torch-python)')
    impls = [('fast', python, 1, args.repeat)]
    if not args.skip_plain:
        impls.append(('plain', python, 0, args.slow_repeat))
    if cv_python:
        impls.append(('chainercv', cv_python, 0, args.slow_repeat))
    if torch_python:
        impls.append(('torch', torch_python, 1, args.repeat))
    anchor_python = None if args.skip_anchors else find_anchor_python(
        args.anchor_python)
    if not args.skip_anchors and anchor_python is None:
        print('ONNX Runtime and OpenVINO skipped: no Python with torch, '
              'onnx, onnxruntime and openvino found (--anchor-python)')
    if anchor_python:
        impls += [(impl, anchor_python, 1, args.repeat) for impl in ANCHORS]

    from pspnet.inference import blas
    gemm_before = gemm_gflops()
    core = openblas_coretype.loaded_core_name()
    print('float32 GEMM, 4096^3: numpy matmul (OpenBLAS {} kernels) {:.0f} '
          'GFLOP/s; fast path ({}) {:.0f} GFLOP/s; OPENBLAS_NUM_THREADS={}'
          .format(core, gemm_before['numpy'], blas.description(),
                  gemm_before['fast'],
                  os.environ.get('OPENBLAS_NUM_THREADS', 'unset')))
    report = {'numpy': np.__version__, 'python': sys.version.split()[0],
              'cpu_count': os.cpu_count(), 'openblas_core': core,
              'fast_gemm': blas.description(),
              'openblas_num_threads': os.environ.get('OPENBLAS_NUM_THREADS'),
              'implementations': {impl: p for impl, p, _, _ in impls},
              'configs': []}
    rng = np.random.RandomState(0)
    tmp = tempfile.mkdtemp(prefix='bench_inference_')
    weights = {}
    try:
        for name, size in models:
            depth = int(name[len('resnet'):])
            if name not in weights:
                print('making random weights for {} ...'.format(name),
                      flush=True)
                weights[name] = os.path.join(tmp, '{}.npz'.format(name))
                make_weights(depth, weights[name], rng)
            macs = network_macs(MODELS[depth](
                N_CLASS, input_size=size,
                initialW=chainer.initializers.Zero()), size)
            input_path = os.path.join(tmp, '{}_{}.npy'.format(name, size))
            np.save(input_path, smooth_images(rng, max(args.batch),
                                              (size, size))
                    - np.array([123.68, 116.779, 103.939],
                               np.float32)[:, None, None])
            onnx_path = os.path.join(tmp, '{}_{}.onnx'.format(name, size))
            if anchor_python:
                print('  exporting the twin to ONNX ...', flush=True)
                exported = spawn(anchor_python, {
                    'impl': 'export-onnx', 'weights': weights[name],
                    'size': size, 'onnx': onnx_path})
                if 'error' in exported:
                    print('  ONNX export failed: ' + exported['error'])
            for batch in args.batch:
                entry = {'model': 'PSPNetResNet' + name[len('resnet'):],
                         'size': size, 'batch': batch, 'macs': macs,
                         'results': {}}
                rounds = {impl: [] for impl, _, _, _ in impls}
                for round_index in range(max(1, args.rounds)):
                    for impl, exe, warmup, repeat in impls:
                        if round_index and impl in ('plain', 'chainercv'):
                            continue  # minutes each: the first round only
                        output = os.path.join(tmp, '{}_{}_{}_{}.npy'.format(
                            name, size, batch, impl))
                        print('  {} @ {} batch {}: {} ...'.format(
                            name, size, batch, LABELS[impl]), flush=True)
                        rounds[impl].append(spawn(exe, {
                            'impl': impl, 'depth': depth, 'size': size,
                            'batch': batch, 'n_class': N_CLASS,
                            'weights': weights[name], 'input': input_path,
                            'onnx': onnx_path, 'warmup': warmup,
                            'repeat': repeat, 'output': output}))
                for impl, _, _, _ in impls:
                    entry['results'][impl] = merge_rounds(rounds[impl])
                    entry['results'][impl]['output'] = os.path.join(
                        tmp, '{}_{}_{}_{}.npy'.format(name, size, batch,
                                                      impl))
                fast = entry['results']['fast']
                for impl, r in entry['results'].items():
                    if impl != 'fast' and 'error' not in r \
                            and 'error' not in fast:
                        r['vs_fast'] = compare(r['output'], fast['output'])
                for r in entry['results'].values():
                    r.pop('output')
                report['configs'].append(entry)

        if args.predict_size != 'none':
            H, W = (int(v) for v in args.predict_size.split('x'))
            name, size = parse_models([args.predict_model])[0] \
                if args.predict_model else models[0]
            depth = int(name[len('resnet'):])
            if name not in weights:
                weights[name] = os.path.join(tmp, '{}.npz'.format(name))
                make_weights(depth, weights[name], rng)
            img_path = os.path.join(tmp, 'predict.npy')
            np.save(img_path, smooth_images(rng, 1, (H, W))[0])
            predict = {'model': 'PSPNetResNet' + name[len('resnet'):],
                       'size': size, 'image': [H, W], 'results': {}}
            todo = [('predict-fast', python)]
            if args.predict_compare:
                todo += [('predict-plain', python)] + (
                    [('predict-chainercv', cv_python)] if cv_python else [])
            for impl, exe in todo:
                print('  predict {}x{} with {} @ {}: {} ...'.format(
                    H, W, name, size, impl), flush=True)
                output = os.path.join(tmp, impl + '.npy')
                r = spawn(exe, {
                    'impl': impl, 'depth': depth, 'size': size,
                    'n_class': N_CLASS, 'weights': weights[name],
                    'input': img_path, 'warmup': 0, 'repeat': 1,
                    'output': output})
                if impl != 'predict-fast' and 'error' not in r:
                    labels = np.load(output)
                    fast_labels = np.load(os.path.join(tmp,
                                                       'predict-fast.npy'))
                    r['label_agreement_vs_fast'] = float(
                        (labels == fast_labels).mean())
                predict['results'][impl] = r
            report['predict'] = predict
    finally:
        for f in os.listdir(tmp):
            os.remove(os.path.join(tmp, f))
        os.rmdir(tmp)

    gemm_after = gemm_gflops()
    # The machine's float32 compute limit, as far as a GEMM here reaches it.
    gemm = max(list(gemm_before.values()) + list(gemm_after.values()))
    report['gemm_gflops'] = {'before': gemm_before, 'after': gemm_after,
                             'used': gemm}
    print('\nfloat32 GEMM, GFLOP/s: numpy {:.0f} before, {:.0f} after; fast '
          'path {:.0f} before, {:.0f} after; the limit uses the best, {:.0f}'
          .format(gemm_before['numpy'], gemm_after['numpy'],
                  gemm_before['fast'], gemm_after['fast'], gemm))
    print('s/image: best forward time over the batch size; vs limit: over '
          'the GEMM limit; vs fast: time over the fast path\'s; cpu/wall: '
          'cores used; load MB: resident after loading the model; peak MB: '
          'peak resident; rel.err and labels: logits against the fast '
          'path\'s')
    for entry in report['configs']:
        entry['gemm_limit_s'] = 2 * entry['macs'] / (gemm * 1e9)
        print_config(entry)
    if 'predict' in report:
        p = report['predict']
        print('\npredict on a {}x{} image, {model} @ {size}:'.format(
            *p['image'], **p))
        for impl, r in p['results'].items():
            if 'error' in r:
                print('  {:<18} failed: {}'.format(impl, r['error']))
                continue
            extra = ''
            if 'label_agreement_vs_fast' in r:
                extra = ', labels equal to fast on {:.3%}'.format(
                    r['label_agreement_vs_fast'])
            print('  {:<18} {:.1f} s, peak {:.0f} MB{}'.format(
                impl, r['times_s'][0], r['peak_mb'], extra))
    report['goals'] = [{'goal': text, 'met': met}
                       for text, met in goals(report)]
    print('\ngoals:')
    for goal in report['goals']:
        print('  [{}] {}'.format('x' if goal['met'] else ' ', goal['goal']))
    if args.json:
        write_json(args.json, report)


if __name__ == '__main__':
    main()
