"""Exported PSPNets as models for prediction: the ``.onnx`` files of
``export_onnx.py`` on ONNX Runtime, its ``.xml`` files (OpenVINO's
format, weights in the ``.bin`` beside) on OpenVINO, with the windows,
canvas, flips and scales of :meth:`pspnet.PSPNet.predict`
(:mod:`pspnet.prediction`).

:func:`load` gives an :class:`ExportedModel`, which demo and evaluation
use where they use a :class:`pspnet.PSPNet`: ``predict``,
``predict_scores``, ``n_class``, ``input_size``, ``mean``, ``flip``,
``scales``, ``dataset``, ``weights_path``. What the network is (depth,
class count, input size, mean, dataset, precision) comes from the file's
metadata (:data:`pspnet.onnx_export.METADATA_KEYS`; in an ``.xml`` file
the ``rt_info`` section ``pspnet``); a file without it is refused.

The runtimes are optional (``requirements-extras.txt``): onnxruntime for
``.onnx``, openvino for ``.xml``; a missing one is a one-line
:class:`~pspnet.errors.UserError`.
"""

import hashlib
import os

import numpy as np

from pspnet import models
from pspnet import onnx_export
from pspnet.datasets import description
from pspnet.datasets import registry
from pspnet.datasets.spec import MIN_INPUT_SIZE
from pspnet.errors import UserError
from pspnet.inference import threads

#: File extensions of exported models, by runtime.
ONNX_EXTENSION = '.onnx'
OPENVINO_EXTENSION = '.xml'
#: The section of an OpenVINO model's ``rt_info`` that holds the metadata.
RT_INFO_SECTION = 'pspnet'
#: Metadata key of the SHA-1 of an ``.xml`` file's ``.bin`` (a pair of
#: files from two exports is refused).
WEIGHTS_DIGEST_KEY = 'weights_sha1'
#: The precisions of an export (metadata ``precision``; files without the
#: key are float32).
PRECISIONS = ('float32', 'bf16', 'int8')
#: OpenVINO's ``INFERENCE_PRECISION_HINT`` for each precision: what runs
#: outside the quantized operations of an INT8 model stays float32.
OPENVINO_HINTS = {'float32': 'f32', 'bf16': 'bf16', 'int8': 'f32'}
#: The metadata every export has.
REQUIRED_KEYS = ('model', 'n_class', 'input_size', 'mean')


def is_exported(path):
    """Whether a ``--pretrained-model`` value names an exported model (by
    its extension, ``.onnx`` or ``.xml``)."""
    return isinstance(path, (str, os.PathLike)) and os.fspath(
        path).lower().endswith((ONNX_EXTENSION, OPENVINO_EXTENSION))


def runtime_of(path):
    """``'onnxruntime'`` for an ``.onnx`` path, ``'openvino'`` for
    ``.xml``."""
    return ('openvino' if os.fspath(path).lower().endswith(
        OPENVINO_EXTENSION) else 'onnxruntime')


def require_openvino():
    """Import openvino, or say how to install it.

    Raises:
        UserError: openvino is missing.
    """
    try:
        import openvino
    except ImportError:
        raise UserError('openvino is not installed, which .xml models need; '
                        '{}'.format(onnx_export.INSTALL))
    return openvino


def openvino_has_bf16():
    """Whether OpenVINO's CPU plugin computes in bfloat16 on this CPU."""
    ov = require_openvino()
    return 'BF16' in ov.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')


def network_names():
    """Metadata ``model`` (link class name) to ``--model`` name."""
    return {cls.__name__: name for name, cls in models.MODELS.items()}


class Metadata(object):
    """The facts of an export, read from its metadata.

    Attributes:
        model_name (str): ``'pspnet_resnet50'`` or ``'pspnet_resnet101'``.
        network (str): The link class, ``'PSPNetResNet50'`` or
            ``'PSPNetResNet101'``.
        n_class (int): Number of classes.
        input_size (tuple of ints): (H, W) of the graph's input.
        mean (numpy.ndarray): (3, 1, 1) float32 mean the graph subtracts.
        dataset (str): The dataset it was exported for (a preset name or a
            description path), ``''`` when unknown.
        precision (str): One of :data:`PRECISIONS`.
        values (dict): Every metadata entry, str to str.
    """

    def __init__(self, values, path):
        self.values = dict(values)
        missing = [k for k in REQUIRED_KEYS if k not in values]
        if missing:
            raise UserError(
                '{} is no PSPNet export (its metadata has no {}); export the '
                'model with export_onnx.py'.format(path, ', '.join(missing)))
        names = network_names()
        try:
            self.network = values['model']
            if self.network not in names:
                raise ValueError('model')
            self.model_name = names[self.network]
            self.n_class = int(values['n_class'])
            self.input_size = tuple(int(v) for v in
                                    values['input_size'].split(','))
            self.mean = np.array([float(v) for v in values['mean'].split(',')],
                                 dtype=np.float32).reshape(3, 1, 1)
            self.precision = values.get('precision', 'float32')
            if (self.n_class < 1 or len(self.input_size) != 2
                    or min(self.input_size) < MIN_INPUT_SIZE
                    or self.precision not in PRECISIONS):
                raise ValueError('values')
        except ValueError:
            raise UserError(
                '{} has damaged PSPNet metadata ({}); export the model again '
                'with export_onnx.py'.format(path, ', '.join(
                    '{}={!r}'.format(k, values.get(k)) for k in
                    REQUIRED_KEYS + ('precision',) if k in values)))
        self.dataset = values.get('dataset', '')


def _dataset_of(meta, requested, path):
    """The DatasetSpec of an export: the requested one (whose class count
    must be the export's), else the one of its metadata if it is known
    here, else the preset of its class count, else None."""
    if requested is not None:
        spec = registry.lookup(requested)
        if spec.n_class != meta.n_class:
            raise UserError(
                '{} has {} classes but {} has {}; pass the dataset it was '
                'exported for{}, or export a model of {}'.format(
                    path, meta.n_class, spec.name, spec.n_class,
                    ' ({})'.format(meta.dataset) if meta.dataset else '',
                    spec.name))
        return spec
    spec = None
    if meta.dataset in registry.DATASETS:
        spec = registry.DATASETS[meta.dataset]
    elif (description.is_description_path(meta.dataset)
          and os.path.isfile(meta.dataset)):
        spec = registry.lookup(meta.dataset)
    elif not meta.dataset:
        spec = registry.dataset_of_n_class(meta.n_class)
    if spec is not None and spec.n_class != meta.n_class:
        spec = None
    return spec


def _runtime_error(path, error, what):
    first = str(error).strip().splitlines()
    return UserError('cannot read {} as {} ({}); pass a file written by '
                     'export_onnx.py'.format(
                         path, what, first[-1][:200] if first else
                         type(error).__name__))


def _check_interface(path, inp_name, inp_shape, out_name, out_shape):
    """The graph's input and output are those of an export: ``image``
    (B, 3, H, W) and ``logits`` (B, n_class, H, W), H, W, n_class fixed."""
    def fixed(dims):
        return all(isinstance(d, int) and d > 0 for d in dims)
    if (inp_name != onnx_export.INPUT_NAME
            or out_name != onnx_export.OUTPUT_NAME
            or len(inp_shape) != 4 or len(out_shape) != 4
            or not fixed(list(inp_shape[1:]) + list(out_shape[1:]))):
        raise UserError('{} is no PSPNet export (input {} {}, output {} {}); '
                        'export the model with export_onnx.py'.format(
                            path, inp_name, list(inp_shape), out_name,
                            list(out_shape)))
    return tuple(inp_shape[2:]), out_shape[1]


def file_digest(path):
    """Hex SHA-1 of a file."""
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 22), b''):
            digest.update(block)
    return digest.hexdigest()


def weights_path_of(xml_path):
    """The ``.bin`` beside an ``.xml`` file."""
    return os.path.splitext(xml_path)[0] + '.bin'


class _OnnxRuntime(object):
    """An ``.onnx`` export (a path, or its bytes) on ONNX Runtime's CPU
    provider, one image per call."""

    name = 'ONNX Runtime'

    def __init__(self, path, data=None, n_threads=None):
        ort = onnx_export.require_onnxruntime()
        self.version = ort.__version__
        options = ort.SessionOptions()
        options.intra_op_num_threads = n_threads or threads.THREADS
        options.log_severity_level = 3
        # Without the memory pattern (one block planned for every
        # activation of a run) the arena holds only what is live: 0.1 GB
        # less for ResNet101 at 713, at the same speed.
        options.enable_mem_pattern = False
        try:
            self.session = ort.InferenceSession(
                path if data is None else data, options,
                providers=['CPUExecutionProvider'])
        except Exception as e:  # onnxruntime's own exception types
            raise _runtime_error(path, e, 'an ONNX model')
        (inp,), outs = self.session.get_inputs(), self.session.get_outputs()
        self.input_size, self.n_class = _check_interface(
            path, inp.name, inp.shape, outs[0].name if len(outs) == 1 else
            [o.name for o in outs], outs[0].shape)
        self.metadata = dict(
            self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, x):
        return self.session.run([onnx_export.OUTPUT_NAME],
                                {onnx_export.INPUT_NAME: x})[0]


class _OpenVino(object):
    """An ``.xml`` export (or an ``openvino.Model``) on OpenVINO's CPU
    plugin, read and checked; :meth:`compile` makes it run, one image per
    call."""

    name = 'OpenVINO'

    def __init__(self, path, model=None, check_weights=True):
        ov = require_openvino()
        self.version = ov.get_version().split('-')[0]
        core = ov.Core()
        if model is None:
            if not os.path.isfile(weights_path_of(path)):
                raise UserError('{} has no {} beside it (an OpenVINO model is '
                                'the pair); copy both files'.format(
                                    path, os.path.basename(
                                        weights_path_of(path))))
            try:
                model = core.read_model(path)
            except Exception as e:  # openvino raises RuntimeError
                raise _runtime_error(path, e, 'an OpenVINO model')
        else:
            # Reshaped below for one image: the caller's keeps its axes.
            model = model.clone()
        self.metadata = {}
        if model.has_rt_info(RT_INFO_SECTION):
            section = model.get_rt_info()[RT_INFO_SECTION]
            self.metadata = {str(k): v.astype(str)
                             for k, v in section.items()}
        inp, out = model.inputs, model.outputs
        if len(inp) != 1 or len(out) != 1 or inp[0].get_partial_shape(
                ).rank.get_length() != 4:
            raise UserError('{} is no PSPNet export ({} inputs, {} outputs); '
                            'export the model with export_onnx.py'.format(
                                path, len(inp), len(out)))

        def dims(port):
            return [d.get_length() if d.is_static else None
                    for d in port.get_partial_shape()]
        self.input_size, self.n_class = _check_interface(
            path, inp[0].get_any_name(), dims(inp[0]),
            out[0].get_any_name(), dims(out[0]))
        digest = self.metadata.get(WEIGHTS_DIGEST_KEY)
        if check_weights and digest and file_digest(
                weights_path_of(path)) != digest:
            raise UserError('{} is not the weights file of {} (written by '
                            'another export); copy the pair of one export'
                            .format(weights_path_of(path), path))
        model.reshape({onnx_export.INPUT_NAME: [1, 3] + list(
            self.input_size)})
        self.core, self.model, self.path = core, model, path
        self.request = None

    def compile(self, precision, n_threads):
        """Compile for the CPU in ``precision`` (one of
        :data:`PRECISIONS`) on ``n_threads`` threads."""
        config = {'INFERENCE_PRECISION_HINT': OPENVINO_HINTS[precision],
                  'PERFORMANCE_HINT': 'LATENCY',
                  'INFERENCE_NUM_THREADS': n_threads}
        if n_threads < len(os.sched_getaffinity(0)):
            # Several processes share the cores: pinned threads of each
            # would crowd the same ones.
            config['ENABLE_CPU_PINNING'] = False
        try:
            compiled = self.core.compile_model(self.model, 'CPU', config)
        except Exception as e:
            raise _runtime_error(self.path, e, 'an OpenVINO model')
        self.request = compiled.create_infer_request()
        self.model = None

    def __call__(self, x):
        self.request.infer({0: x})
        return self.request.get_output_tensor(0).data.copy()


class ExportedModel(onnx_export.ExportedSegmenter):
    """An exported PSPNet on its runtime, predicting as
    :meth:`pspnet.PSPNet.predict` does (made by :func:`load`).

    Attributes:
        n_class, input_size, mean, flip, scales: As the link's.
        dataset (pspnet.datasets.spec.DatasetSpec or None): The dataset of
            its classes.
        weights_path (str): The file (its identity keeps evaluation
            checkpoints to the same model).
        model_name (str): ``'pspnet_resnet50'`` or ``'pspnet_resnet101'``.
        precision (str): One of :data:`PRECISIONS`.
        metadata (Metadata): What the file says of itself.
        runtime (str): ``'ONNX Runtime'`` or ``'OpenVINO'``, with
            ``runtime_version``.
        n_threads (int): Threads of the runtime.
    """

    def __init__(self, runner, meta, path, dataset=None, flip=True,
                 scales=None, n_threads=None):
        super(ExportedModel, self).__init__(
            self._logits, meta.input_size, meta.n_class, meta.mean, flip,
            scales)
        self.runner = runner
        self.metadata = meta
        self.model_name = meta.model_name
        self.precision = meta.precision
        self.dataset = dataset
        self.weights_path = path
        self.runtime = runner.name
        self.runtime_version = runner.version
        self.n_threads = n_threads or threads.THREADS

    def _logits(self, x):
        """(B, 3, H, W) float32 RGB in [0, 255] to (B, n_class, H, W)
        float32 logits, one image per call of the runtime."""
        if len(x) == 1:
            return self.runner(np.ascontiguousarray(x, dtype=np.float32))
        out = None
        for i in range(len(x)):
            logits = self.runner(np.ascontiguousarray(x[i:i + 1],
                                                      dtype=np.float32))
            if out is None:
                out = np.empty((len(x),) + logits.shape[1:], np.float32)
            out[i] = logits[0]
        return out

    def describe(self):
        """One line: what runs, where."""
        return ('{}: {}, {} classes, input {}x{}, {}, on {} {} (CPU, {} '
                'thread{})'.format(
                    self.weights_path, self.metadata.network, self.n_class,
                    self.input_size[0], self.input_size[1], self.precision,
                    self.runtime, self.runtime_version, self.n_threads,
                    '' if self.n_threads == 1 else 's'))


def _metadata_facts(runner, path):
    meta = Metadata(runner.metadata, path)
    if (tuple(runner.input_size) != meta.input_size
            or runner.n_class != meta.n_class):
        raise UserError(
            '{} says input {}, {} classes in its metadata but its graph has '
            'input {}, {} classes; export the model again with '
            'export_onnx.py'.format(path, meta.input_size, meta.n_class,
                                    tuple(runner.input_size),
                                    runner.n_class))
    return meta


def check_path(path):
    """Refuse a missing exported model in one line, before long work."""
    if not os.path.isfile(path):
        raise UserError('exported model {!r} does not exist; pass an .onnx '
                        'or .xml file written by export_onnx.py'.format(
                            os.fspath(path)))


def load(path, dataset=None, flip=True, scales=None, n_threads=None,
         data=None, ov_model=None, check=None):
    """An exported model on its runtime.

    Args:
        path (str): The ``.onnx`` (ONNX Runtime) or ``.xml`` (OpenVINO)
            file.
        dataset (str, DatasetSpec or None): The dataset of its classes
            (``--dataset``; its class count must be the file's); None takes
            the one of the metadata.
        flip (bool), scales (tuple of floats or None): As the link's.
        n_threads (int or None): Runtime threads; None follows
            ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``, else the usable
            cores (:data:`pspnet.inference.threads.THREADS`).
        data (bytes or None): The ``.onnx`` graph's bytes, instead of
            reading ``path`` (the export measures what it will write).
        ov_model (openvino.Model or None): The OpenVINO model, instead of
            reading ``path``.
        check (callable or None): ``check(metadata)`` before the runtime
            compiles the model (the scripts' flags against the file).

    Returns:
        ExportedModel

    Raises:
        UserError: The runtime is not installed; the file is missing,
        unreadable, or no PSPNet export; its class count is not the
        dataset's.
    """
    path = os.fspath(path)
    if data is None and ov_model is None:
        check_path(path)
    if runtime_of(path) == 'openvino':
        require_openvino()
    else:
        onnx_export.require_onnxruntime()
    n_threads = n_threads or threads.THREADS
    if runtime_of(path) == 'openvino':
        runner = _OpenVino(path, ov_model, check_weights=ov_model is None)
    else:
        runner = _OnnxRuntime(path, data, n_threads=n_threads)
    meta = _metadata_facts(runner, path)
    if check is not None:
        check(meta)
    spec = _dataset_of(meta, dataset, path)
    if runtime_of(path) == 'openvino':
        runner.compile(meta.precision, n_threads)
    return ExportedModel(runner, meta, path, spec, flip, scales, n_threads)
