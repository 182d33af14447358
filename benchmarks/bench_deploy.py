"""CPU deployment: the fast float32 path against exported models on ONNX
Runtime and OpenVINO, in float32, bfloat16 and INT8.

    .venv/bin/python -m benchmarks.bench_deploy
        [--models resnet101@713 resnet50@473] [--predict-size 1024x2048]
        [--rounds 2] [--repeat 3] [--predict-repeat 1]
        [--calibration-windows 8] [--engines ...]
        [--json result/bench_deploy.json]

For each network it writes random weights (Chainer's initialization,
batch normalizations drawn far from identities) and, in a child process,
exports them as ``export_onnx.py`` does: a float32 ONNX graph, its INT8
QDQ graph (:func:`pspnet.quantization.quantize_int8`, calibrated on
``--calibration-windows`` smooth random images of the input size), and
OpenVINO models of both, the float32 one also marked bf16. Then every
engine runs in fresh processes (``--rounds`` times in turn; the best
time counts), each through :class:`pspnet.exported.ExportedModel` (the
fast path through the link), and reports

- ``forward``: seconds per image of the network at input size (batch 1,
  best of ``--repeat`` after a warm-up),
- ``predict``: seconds of ``predict`` on one ``--predict-size`` image
  (sliding windows, each with its flip; best of ``--predict-repeat``),
- the peak resident memory of ``predict`` (VmHWM of the process after
  the model loaded and ran once, as a script that predicts holds it: the
  model, the runtime's buffers, the image, its scores; the forward
  passes' peak apart, after them),
- the label agreement of its ``predict`` with the fast path's, and the
  relative error of its logits.

The engines: ``fast`` (float32, :mod:`pspnet.inference`),
``onnxruntime-float32``, ``onnxruntime-int8``, ``openvino-float32``,
``openvino-bf16`` (where the CPU has bfloat16 units), ``openvino-int8``.
On random weights the INT8 labels agree with float32's on only part of
the pixels (random networks have no margins); the accuracy of INT8 on a
trained network is what ``export_onnx.py`` measures (docs/onnx.md).
Thread counts follow ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``, else
the usable cores. Needs the extras of requirements-extras.txt.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

from benchmarks import bench_inference
from benchmarks.bench_inference import make_weights
from benchmarks.bench_inference import parse_models
from benchmarks.bench_inference import smooth_images
from benchmarks.json_results import write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINES = ('fast', 'onnxruntime-float32', 'onnxruntime-int8',
           'openvino-float32', 'openvino-bf16', 'openvino-int8')
N_CLASS = bench_inference.N_CLASS
#: The goals: INT8 ``predict`` at most this fraction of the fast path's,
#: and the peak memory of ResNet101 at 713 in INT8.
INT8_TIME_RATIO = 0.45
INT8_PEAK_GB = 0.6


# ---------------------------------------------------------------- child

def _peak_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def _reset_peak():
    """Start VmHWM again from the current resident size (Linux)."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def _link(spec):
    from pspnet import PSPNetResNet101
    from pspnet import PSPNetResNet50
    cls = PSPNetResNet50 if spec['depth'] == 50 else PSPNetResNet101
    model = cls(n_class=N_CLASS, pretrained_model=spec['weights'],
                input_size=(spec['size'],) * 2)
    # Chainer fills every gradient with NaN when a link is built.
    model.cleargrads()
    return model


def export_child(spec):
    """Write the float32, INT8 and OpenVINO files of the spec's weights."""
    import numpy as np
    import onnx
    from pspnet import onnx_export
    from pspnet import quantization
    model = _link(spec)
    graph = onnx_export.to_onnx(model)
    meta = onnx_export.read_metadata(graph)
    del model
    onnx.save(graph, spec['onnx'])
    rng = np.random.RandomState(1)
    windows = (x[None] for x in smooth_images(
        rng, spec['calibration_windows'], (spec['size'],) * 2))
    start = time.perf_counter()
    with quantization.workdir() as work:
        int8, n = quantization.quantize_int8(
            graph, windows, dict(meta, precision='int8'), work)
    calibration_s = time.perf_counter() - start
    onnx.save(int8, spec['int8'])
    del graph, int8
    result = {'calibration_windows': n, 'quantization_s': calibration_s}
    if spec.get('openvino'):
        for path, xml, precision in (
                (spec['onnx'], spec['xml-float32'], 'float32'),
                (spec['onnx'], spec['xml-bf16'], 'bf16'),
                (spec['int8'], spec['xml-int8'], 'int8')):
            ov_model = quantization.openvino_model(
                path, dict(meta, precision=precision))
            quantization.save_openvino(ov_model, xml)
    return result


def run_child(spec):
    """Measure one engine as the spec says; returns a dict."""
    import numpy as np
    engine = spec['engine']
    if engine == 'export':
        return export_child(spec)
    start = time.perf_counter()
    if engine == 'fast':
        from pspnet.inference import fast_forward
        model = _link(spec)

        def forward(x):
            # The exports subtract the mean inside; the network does not.
            return fast_forward(model, x - model.mean)
        version = 'pspnet fast path'
    else:
        from pspnet import exported
        runtime, precision = engine.split('-')
        path = spec['xml-' + precision] if runtime == 'openvino' else (
            spec['int8'] if precision == 'int8' else spec['onnx'])
        model = exported.load(path)
        forward = model.runner
        version = '{} {}'.format(model.runtime, model.runtime_version)
    load_s = time.perf_counter() - start
    x = np.load(spec['input'])
    # One call first, as the first window of a prediction would: the
    # runtime's buffers; predict is then measured as a script that only
    # predicts holds it (the model, the image, its scores).
    forward(x)
    img = np.load(spec['image'])
    predict_times = []
    for _ in range(spec['predict_repeat']):
        start = time.perf_counter()
        labels = model.predict([img])[0]
        predict_times.append(time.perf_counter() - start)
    np.save(spec['labels'], labels)
    peak = _peak_mb()
    del img, labels
    _reset_peak()
    times = []
    for _ in range(spec['repeat']):
        start = time.perf_counter()
        logits = forward(x)
        times.append(time.perf_counter() - start)
    np.save(spec['logits'], np.asarray(logits))
    return {'load_s': load_s, 'forward_s': times,
            'predict_s': predict_times, 'forward_peak_mb': _peak_mb(),
            'peak_mb': peak, 'version': version}


# --------------------------------------------------------------- parent

def spawn(spec):
    """One measurement in a fresh process; its dict or ``{'error': ...}``."""
    return bench_inference.spawn(sys.executable, spec,
                                 module='benchmarks.bench_deploy')


def merge(results):
    good = [r for r in results if 'error' not in r]
    if not good:
        return results[0]
    merged = dict(good[0])
    for key in ('forward_s', 'predict_s'):
        merged[key] = [t for r in good for t in r[key]]
    for key in ('peak_mb', 'forward_peak_mb'):
        merged[key] = max(r[key] for r in good)
    merged['processes'] = len(good)
    return merged


def parse_size(text):
    H, _, W = text.partition('x')
    return int(H), int(W)


def table(report):
    """The Markdown table: one row per engine, one column group per
    network."""
    configs = report['configs']
    head = '| engine | ' + ' | '.join(
        '{model} @ {size}: forward, predict, peak, labels'.format(**c)
        for c in configs) + ' |'
    rows = [head, '|' + '---|' * (len(configs) + 1)]
    for engine in report['engines']:
        cells = []
        for config in configs:
            r = config['results'].get(engine)
            if r is None or 'error' in r:
                cells.append('failed' if r else '-')
                continue
            fast = config['results'].get('fast', {})
            ratio = ''
            if 'predict_s' in fast and engine != 'fast':
                ratio = ' ({:.2f}x)'.format(min(r['predict_s'])
                                            / min(fast['predict_s']))
            cells.append('{:.2f} s, {:.1f} s{}, {:.0f} MB, {}'.format(
                min(r['forward_s']), min(r['predict_s']), ratio,
                r['peak_mb'], '{:.2%}'.format(
                    r['vs_fast']['label_agreement'])
                if 'vs_fast' in r else '-'))
        rows.append('| {} | {} |'.format(engine, ' | '.join(cells)))
    return '\n'.join(rows)


def goals(report):
    """The INT8 goals, each as (text, bool)."""
    checks = []
    for config in report['configs']:
        name = '{model}@{size}'.format(**config)
        fast = config['results'].get('fast', {})
        for engine in ('onnxruntime-int8', 'openvino-int8'):
            r = config['results'].get(engine, {})
            if 'predict_s' not in r or 'predict_s' not in fast:
                continue
            ratio = min(r['predict_s']) / min(fast['predict_s'])
            checks.append(('{} {}: predict {:.2f}x the fast path\'s '
                           '(<= {})'.format(name, engine, ratio,
                                            INT8_TIME_RATIO),
                           ratio <= INT8_TIME_RATIO))
            if config['model'] == 'resnet101' and config['size'] == 713:
                checks.append(('{} {}: peak memory {:.0f} MB (<= {} GB, '
                               '{:.0f} MB)'.format(
                                   name, engine, r['peak_mb'], INT8_PEAK_GB,
                                   INT8_PEAK_GB * 1024),
                               r['peak_mb'] / 1024 <= INT8_PEAK_GB))
    return checks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+',
                        default=['resnet101@713', 'resnet50@473'],
                        help='networks, NAME[@SIZE] (default resnet101@713 '
                        'resnet50@473)')
    parser.add_argument('--engines', nargs='+', choices=ENGINES,
                        default=list(ENGINES))
    parser.add_argument('--predict-size', type=parse_size,
                        default=(1024, 2048), metavar='HxW',
                        help='the image of predict (default 1024x2048)')
    parser.add_argument('--rounds', type=int, default=2,
                        help='fresh processes per engine, in turn')
    parser.add_argument('--repeat', type=int, default=3,
                        help='timed forward passes per process')
    parser.add_argument('--predict-repeat', type=int, default=1,
                        help='timed predicts per process')
    parser.add_argument('--calibration-windows', type=int, default=8,
                        help='random images that calibrate INT8')
    parser.add_argument('--json', default=os.path.join(
        'result', 'bench_deploy.json'))
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print('RESULT ' + json.dumps(run_child(json.loads(args.child))))
        return
    import numpy as np
    from pspnet import exported
    engines = list(args.engines)
    have_openvino = True
    try:
        has_bf16 = exported.openvino_has_bf16()
    except Exception:
        have_openvino = has_bf16 = False
    if not has_bf16 and 'openvino-bf16' in engines:
        engines.remove('openvino-bf16')
    if not have_openvino:
        engines = [e for e in engines if not e.startswith('openvino')]
    report = {'engines': engines, 'configs': [], 'machine': {
        'platform': platform.platform(), 'processor': platform.processor(),
        'cpu_count': os.cpu_count(), 'load_average': os.getloadavg(),
        'threads': os.environ.get('OPENBLAS_NUM_THREADS')
        or os.environ.get('OMP_NUM_THREADS')}}
    work = tempfile.mkdtemp(prefix='bench-deploy-')
    rng = np.random.RandomState(0)
    image = os.path.join(work, 'image.npy')
    np.save(image, smooth_images(rng, 1, args.predict_size)[0])
    try:
        for base, size in parse_models(args.models):
            depth = int(base[len('resnet'):])
            tag = '{}-{}'.format(base, size)
            spec = {'depth': depth, 'size': size,
                    'weights': os.path.join(work, tag + '.npz'),
                    'onnx': os.path.join(work, tag + '.onnx'),
                    'int8': os.path.join(work, tag + '-int8.onnx'),
                    'input': os.path.join(work, tag + '-input.npy'),
                    'image': image, 'repeat': args.repeat,
                    'predict_repeat': args.predict_repeat,
                    'calibration_windows': args.calibration_windows,
                    'openvino': have_openvino}
            for precision in ('float32', 'bf16', 'int8'):
                spec['xml-' + precision] = os.path.join(
                    work, '{}-{}.xml'.format(tag, precision))
            make_weights(depth, spec['weights'], rng)
            np.save(spec['input'], smooth_images(rng, 1, (size, size)))
            print('{} @ {}: exporting'.format(base, size), flush=True)
            exported_info = spawn(dict(spec, engine='export'))
            if 'error' in exported_info:
                raise SystemExit('export failed: ' + exported_info['error'])
            config = {'model': base, 'size': size, 'export': exported_info,
                      'results': {}}
            runs = {e: [] for e in engines}
            for round_ in range(args.rounds):
                for engine in engines:
                    out = os.path.join(work, '{}-{}-{}'.format(
                        tag, engine, round_))
                    result = spawn(dict(spec, engine=engine,
                                        logits=out + '-logits.npy',
                                        labels=out + '-labels.npy'))
                    result['files'] = out
                    runs[engine].append(result)
                    print('  {:<20} {}'.format(engine, 'failed: ' + result[
                        'error'] if 'error' in result else
                        'forward {:.2f} s, predict {:.1f} s, peak {:.0f} MB'
                        .format(min(result['forward_s']),
                                min(result['predict_s']),
                                result['peak_mb'])), flush=True)
            for engine in engines:
                config['results'][engine] = merge(runs[engine])
            fast = config['results'].get('fast', {})
            if 'files' in fast:
                ref_logits = np.load(fast['files'] + '-logits.npy')
                ref_labels = np.load(fast['files'] + '-labels.npy')
                for engine, r in config['results'].items():
                    if engine == 'fast' or 'error' in r:
                        continue
                    logits = np.load(r['files'] + '-logits.npy')
                    labels = np.load(r['files'] + '-labels.npy')
                    r['vs_fast'] = {
                        'rel_error': float(np.abs(logits - ref_logits).max()
                                           / np.abs(ref_logits).max()),
                        'forward_label_agreement': float(
                            (logits.argmax(1) == ref_logits.argmax(1))
                            .mean()),
                        'label_agreement': float((labels == ref_labels)
                                                 .mean())}
            report['configs'].append(config)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print('forward: s per image at input size (batch 1); predict: s for one '
          '{}x{} image (windows and flips), its ratio to the fast path\'s; '
          'peak: resident memory of the process in predict (MB = 2^20 '
          'bytes); labels: predict\'s labels equal to the fast path\'s'.format(*args.predict_size))
    print(table(report))
    report['goals'] = []
    for text, ok in goals(report):
        print('[{}] {}'.format('met' if ok else 'NOT met', text))
        report['goals'].append({'goal': text, 'met': ok})
    write_json(args.json, report)


if __name__ == '__main__':
    main()
