"""Export a PSPNet (export_onnx.py): float32 ONNX graphs, OpenVINO models,
and INT8 and bfloat16 models measured against float32.

Every flag is checked before the model loads; the file is written only
once everything passed (the low-precision model's accuracy included) and
atomically (:mod:`pspnet.atomic`): a refused or failed export writes
nothing.
"""

import dataclasses
import os

import numpy as np

from pspnet import atomic
from pspnet import exported
from pspnet import memory
from pspnet import models
from pspnet import onnx_export
from pspnet import quantization
from pspnet.datasets import registry
from pspnet.errors import UserError

#: Calibration images of an INT8 export, by default.
CALIBRATION_IMAGES = 16
#: Labelled images the low-precision model is measured on, by default.
EVALUATION_IMAGES = 16
CALIBRATION_SPLIT = 'train'
EVALUATION_SPLIT = 'val'


@dataclasses.dataclass
class ExportOptions:
    """The options of export_onnx.py (the flags of the same names).

    Attributes:
        output (str): The file to write: ``.xml`` for OpenVINO (and the
            ``.bin`` beside it), else an ONNX graph.
        model, pretrained_model, dataset, input_size: The network, as in
            :func:`pspnet.models.build_model`.
        check (bool): Compare a float32 export with Chainer before writing.
        precision (str): ``'float32'``, ``'bf16'`` or ``'int8'``.
        calibration (str or None): The dataset (a name or a description
            path) whose images calibrate INT8 and whose labelled split
            measures a low-precision model; None: ``dataset``, else the
            weights' dataset.
        calibration_split (str or None): Its split for calibration
            (:data:`CALIBRATION_SPLIT`).
        calibration_images (int or None): How many images calibrate
            (:data:`CALIBRATION_IMAGES`), spread over the split.
        evaluation_split (str or None): The labelled split of the accuracy
            measurement (:data:`EVALUATION_SPLIT`).
        evaluation_images (int or None): How many of its images
            (:data:`EVALUATION_IMAGES`); 0 measures nothing.
        data_dir (str): The dataset's folder; ``'auto'`` for Chainer's
            dataset cache.
        max_miou_drop (float or None): Refuse a low-precision model whose
            mean IoU is more than this many points (1/100) below float32's.
    """

    output: str
    model: str = 'pspnet_resnet101'
    pretrained_model: str = None
    dataset: str = None
    input_size: int = None
    check: bool = False
    precision: str = 'float32'
    calibration: str = None
    calibration_split: str = None
    calibration_images: int = None
    evaluation_split: str = None
    evaluation_images: int = None
    data_dir: str = 'auto'
    max_miou_drop: float = None

    @classmethod
    def from_namespace(cls, namespace):
        """The options of parsed flags (fields of the same names)."""
        return cls(**{field.name: getattr(namespace, field.name)
                      for field in dataclasses.fields(cls)
                      if hasattr(namespace, field.name)})


def _target(options):
    return exported.runtime_of(options.output)


def check_options(options):
    """Refuse, in one line and before anything loads, what cannot work:
    missing packages, flags that do not fit the precision or the target, a
    file that cannot be written, a bfloat16 export on a CPU without it.

    Raises:
        UserError
    """
    onnx_export.require_onnx()
    low = options.precision != 'float32'
    openvino = _target(options) == 'openvino'
    calibration_flags = [flag for flag, value in (
        ('--calibration-split', options.calibration_split),
        ('--calibration-images', options.calibration_images)) if value
        is not None]
    measure_flags = [flag for flag, value in (
        ('--calibration', options.calibration),
        ('--evaluation-split', options.evaluation_split),
        ('--evaluation-images', options.evaluation_images),
        ('--max-miou-drop', options.max_miou_drop)) if value is not None]
    if not low and calibration_flags + measure_flags:
        raise UserError('{} {} for --precision int8 or bf16; drop {} for a '
                        'float32 export'.format(
                            ', '.join(calibration_flags + measure_flags),
                            'are' if len(calibration_flags + measure_flags)
                            > 1 else 'is', 'them' if len(
                                calibration_flags + measure_flags) > 1
                            else 'it'))
    if options.precision == 'bf16' and calibration_flags:
        raise UserError('{} calibrate int8; a bf16 export needs no '
                        'calibration; drop {}'.format(
                            ', '.join(calibration_flags),
                            ', '.join(calibration_flags)))
    if options.check and low:
        raise UserError('--check compares a float32 graph with Chainer; a {} '
                        'export is measured against float32 on '
                        '--evaluation-split instead; drop --check'.format(
                            options.precision))
    if options.precision == 'bf16' and not openvino:
        raise UserError('--precision bf16 runs on OpenVINO: write an .xml '
                        'file ({} is an ONNX file; ONNX Runtime computes in '
                        'float32 on the CPU)'.format(options.output))
    if options.max_miou_drop is not None and options.evaluation_images == 0:
        raise UserError('--max-miou-drop needs images to measure; drop '
                        '--evaluation-images 0')
    if options.check or low:
        onnx_export.require_onnxruntime()
    if options.precision == 'int8':
        quantization.require_quantizer()
    if openvino:
        exported.require_openvino()
    if options.precision == 'bf16' and not exported.openvino_has_bf16():
        raise UserError('this CPU has no bfloat16 units (OpenVINO finds '
                        'none), so bf16 would run in float32; export '
                        '--precision int8 or float32')
    atomic.check_target(options.output, '{} file'.format(
        '.xml' if openvino else '.onnx'))
    if openvino:
        atomic.check_target(exported.weights_path_of(options.output),
                            '.bin file')


@dataclasses.dataclass
class Measurement:
    """The data of a low-precision export (made by :func:`read_data`).

    Attributes:
        spec (DatasetSpec): The dataset.
        calibration (SegmentationDataset or None): The calibration split
            (INT8).
        calibration_indices (list of ints): Its images used.
        evaluation (SegmentationDataset or None): The labelled split.
        evaluation_indices (list of ints): Its images used.
    """

    spec: object
    calibration: object = None
    calibration_indices: list = None
    evaluation: object = None
    evaluation_indices: list = None


def read_data(options, model):
    """The calibration and evaluation images of a low-precision export,
    checked against the model's class count.

    Raises:
        UserError: No dataset named, another class count, a split that is
        missing, empty or without labels.
    """
    name = options.calibration or options.dataset or (
        model.dataset.name if model.dataset is not None else None)
    if name is None:
        raise UserError('a {} export needs images of the model\'s dataset; '
                        'pass --calibration DATASET (a preset or PATH.json)'
                        .format(options.precision))
    spec = registry.lookup(name)
    if spec.n_class != model.n_class:
        raise UserError('--calibration {} has {} classes but the model has '
                        '{}; pass the dataset of the weights'.format(
                            spec.name, spec.n_class, model.n_class))
    data = Measurement(spec=spec)
    if options.precision == 'int8':
        split = options.calibration_split or CALIBRATION_SPLIT
        data.calibration = spec.get(split, options.data_dir)
        if len(data.calibration) == 0:
            raise UserError('the {} split of {} has no images to calibrate '
                            'on; pass another --calibration-split'.format(
                                split, spec.name))
        data.calibration_indices = quantization.spread_indices(
            len(data.calibration), options.calibration_images
            or CALIBRATION_IMAGES)
    n_eval = (EVALUATION_IMAGES if options.evaluation_images is None
              else options.evaluation_images)
    if n_eval:
        split = options.evaluation_split or EVALUATION_SPLIT
        data.evaluation = spec.get(split, options.data_dir)
        if not getattr(data.evaluation, 'has_labels', True) or len(
                data.evaluation) == 0:
            raise UserError('the {} split of {} has no {}, so the {} model '
                            'cannot be measured; pass a labelled '
                            '--evaluation-split (or --evaluation-images 0)'
                            .format(split, spec.name, 'labels' if len(
                                data.evaluation) else 'images',
                                options.precision))
        data.evaluation_indices = quantization.spread_indices(
            len(data.evaluation), n_eval)
        if hasattr(data.evaluation, 'check_labels'):
            data.evaluation.check_labels(data.evaluation_indices)
    return data


def _accuracy_line(options, data, result):
    return ('{} against float32 on {} images of the {} split of {}: mean IoU '
            '{:.4f} (float32 {:.4f}, {:+.2f} points), labels equal on {:.3%} '
            'of the pixels'.format(
                options.precision, result['n_images'],
                options.evaluation_split or EVALUATION_SPLIT, data.spec.name,
                result['miou'], result['miou_float32'], -result['drop'],
                result['agreement']))


def _check_drop(options, data, result):
    limit = options.max_miou_drop
    if limit is None:
        return
    if not result['drop'] <= limit:  # NaN fails too
        raise UserError(
            'the {} model\'s mean IoU is {:.2f} points below float32\'s '
            '({:.4f} against {:.4f} on {} images of {}), more than '
            '--max-miou-drop {:g}; nothing was written; calibrate on more '
            'images (--calibration-images) or export bf16 or float32'.format(
                options.precision, result['drop'], result['miou'],
                result['miou_float32'], result['n_images'], data.spec.name,
                limit))


def _say(line):
    print(line, flush=True)


def _measure(options, model, data, low):
    """The low-precision model against the float32 one, with a bar."""
    bar, progress = quantization.progress_bar(
        len(data.evaluation_indices), 'measuring {}'.format(
            options.precision))
    try:
        return quantization.compare(model, low, data.evaluation,
                                    data.evaluation_indices, progress)
    finally:
        bar.close()


def _write_onnx(path, graph):
    payload = graph.SerializeToString()
    try:
        atomic.write_atomic(path, lambda f: f.write(payload))
    except OSError as e:
        raise atomic.write_error(path, e)


def export_low_precision(options, model, data):
    """Quantize (INT8) or mark bfloat16, measure against the float32 model,
    and write ``options.output`` if the drop is within
    ``options.max_miou_drop``.

    Args:
        options (ExportOptions)
        model (pspnet.PSPNet): The float32 network (its fast path is the
            reference of the measurement).
        data (Measurement): From :func:`read_data`.

    Prints what it did.

    Raises:
        UserError: The drop is beyond ``max_miou_drop`` (nothing written),
        the file cannot be written.
    """
    onnx, _ = onnx_export.require_onnx()
    openvino = _target(options) == 'openvino'
    graph = onnx_export.to_onnx(model)
    meta = onnx_export.read_metadata(graph)
    meta['precision'] = options.precision
    with quantization.workdir() as work:
        if options.precision == 'int8':
            bar, progress = quantization.progress_bar(
                len(data.calibration_indices), 'calibration')
            try:
                windows = quantization.calibration_windows(
                    data.calibration, data.calibration_indices,
                    model.input_size, model.mean, progress)
                graph, n_windows = quantization.quantize_int8(
                    graph, windows, meta, work)
            finally:
                bar.close()
            meta['calibration'] = (
                '{} windows of {} images of the {} split of {}'.format(
                    n_windows, len(data.calibration_indices),
                    options.calibration_split or CALIBRATION_SPLIT,
                    data.spec.name))
            _say('int8: calibrated on ' + meta['calibration'])
        quantization.set_metadata(graph, meta)
        ov_model = low_data = None
        if openvino:
            onnx_path = os.path.join(work, 'export.onnx')
            onnx.save(graph, onnx_path)
            ov_model = quantization.openvino_model(onnx_path, meta)
        else:
            low_data = graph.SerializeToString()
        if data.evaluation is not None:
            low = exported.load(options.output, data=low_data,
                                ov_model=ov_model)
            result = _measure(options, model, data, low)
            del low
            line = _accuracy_line(options, data, result)
            _say(line)
            _check_drop(options, data, result)
            meta['accuracy'] = line
        else:
            _say('{}: not measured against float32 '
                         '(--evaluation-images 0)'.format(options.precision))
        del low_data
        if openvino:
            if 'accuracy' in meta:
                ov_model.set_rt_info(meta['accuracy'], [
                    exported.RT_INFO_SECTION, 'accuracy'])
            quantization.save_openvino(ov_model, options.output)
        else:
            quantization.set_metadata(graph, meta)
            _write_onnx(options.output, graph)


def export_openvino_float32(options, model):
    """The float32 graph as an OpenVINO model; with ``options.check``
    compared with Chainer on a random image first.

    Prints what it did.
    """
    onnx, _ = onnx_export.require_onnx()
    graph = onnx_export.to_onnx(model)
    meta = onnx_export.read_metadata(graph)
    with quantization.workdir() as work:
        onnx_path = os.path.join(work, 'export.onnx')
        onnx.save(graph, onnx_path)
        del graph
        ov_model = quantization.openvino_model(onnx_path, meta)
        if options.check:
            low = exported.load(options.output, ov_model=ov_model)
            rng = np.random.RandomState(0)
            result = onnx_export.check_runtime(model, low.runner, rng.uniform(
                0, 255, (1, 3) + tuple(model.input_size)).astype(np.float32),
                'OpenVINO')
            _say('OpenVINO against Chainer on a random image: logits '
                         'within {:.2g} relative, labels equal on {:.3%} of '
                         'the pixels'.format(*result))
        quantization.save_openvino(ov_model, options.output)


def run(options):
    """Export as ``options`` say.

    Prints the check or the measurement, and what was written.

    Raises:
        UserError: See :func:`check_options`, :func:`read_data`; weights
        that do not fit; a measured drop beyond ``max_miou_drop``.
    """
    check_options(options)
    depth = models.model_class(options.model).n_layer
    # INT8's calibration holds more than the trace; bfloat16 converts the
    # float32 graph.
    path = 'export-int8' if options.precision == 'int8' else 'export'
    if options.input_size is not None:
        memory.check_input_size(depth, options.input_size, path=path)
    try:
        model = models.build_model(options.model, options.dataset,
                                   options.pretrained_model,
                                   options.input_size)
    except MemoryError:
        raise onnx_export.out_of_memory(options.output, options.input_size)
    # The default input size (the dataset's) is known once the model is.
    memory.check_input_size(depth, model.input_size[0], path=path)
    openvino = _target(options) == 'openvino'
    try:
        if options.precision != 'float32':
            data = read_data(options, model)
            export_low_precision(options, model, data)
        elif openvino:
            export_openvino_float32(options, model)
        else:
            _, check = onnx_export.export(model, options.output,
                                          check=options.check)
            if check:
                _say('onnxruntime against Chainer on a random image: '
                             'logits within {:.2g} relative, labels equal on '
                             '{:.3%} of the pixels'.format(*check))
    except MemoryError:
        raise onnx_export.out_of_memory(options.output, model.input_size[0])
    H, W = model.input_size
    _say(
        'wrote {}: {}, {} classes{}{}; input "{}" (B, 3, {}, {}) float32 RGB '
        'in [0, 255], output "{}" (B, {}, {}, {}) float32 logits'.format(
            options.output + (' and ' + exported.weights_path_of(
                options.output) if openvino else ''),
            type(model).__name__, model.n_class,
            ' ({})'.format(model.dataset.name) if model.dataset else '',
            '' if options.precision == 'float32' and not openvino else
            ', {} on {}'.format(options.precision, 'OpenVINO' if openvino
                                else 'ONNX Runtime'),
            onnx_export.INPUT_NAME, H, W, onnx_export.OUTPUT_NAME,
            model.n_class, H, W))
