"""Exporting a PSPNet to ONNX, and running the export with ONNX Runtime.

The export goes through the ``onnx_chainer`` that ships inside Chainer
7.8.1 (onnx-chainer 1.6 on PyPI cannot be installed beside it), with one
converter of its own: onnx_chainer maps ``F.resize_images`` to an ONNX
``Resize`` without ``align_corners``, so the graph would sample every
pyramid upsampling and the final one half a pixel off Chainer's
(``align_corners=True``); :func:`convert_resize_images` emits
``coordinate_transformation_mode='align_corners'``.

The graph (:data:`INPUT_NAME` to :data:`OUTPUT_NAME`):

- input ``image``: (B, 3, H, W) float32 RGB in [0, 255], H, W the input
  size of the model, B free (a dynamic axis). The mean is subtracted
  inside the graph.
- output ``logits``: (B, n_class, H, W) float32 class scores before
  softmax, at input size: what ``model.forward(image - model.mean)``
  returns in Chainer's test mode.

Optional dependencies: ``onnx`` below 1.19 (onnx_chainer imports
``onnx.mapping``, removed in onnx 1.19) for the export and
``onnxruntime`` for :class:`OnnxRuntimeSegmenter` and the check; both are
pinned in ``requirements-extras.txt``.
"""

import gc
import os
import warnings

import chainer
import numpy as np

import pspnet
from pspnet import atomic
from pspnet import prediction
from pspnet.errors import UserError
from pspnet.links.pspnet import IMAGENET_MEAN

#: Name of the graph's input: (B, 3, H, W) float32 RGB in [0, 255].
INPUT_NAME = 'image'
#: Name of the graph's output: (B, n_class, H, W) float32 logits.
OUTPUT_NAME = 'logits'
#: ONNX operator set of the graph: onnx_chainer's newest (``Resize`` with
#: ``coordinate_transformation_mode`` exists since 11).
OPSET_VERSION = 11
#: IR version written into the file: the one of operator set 11 (onnx
#: 1.6), which every runtime that reads opset 11 also reads.
IR_VERSION = 6
#: How to install the optional dependencies.
INSTALL = 'pip install -r requirements-extras.txt'
#: Keys of the metadata written into the graph (``metadata_props``).
METADATA_KEYS = ('pspnet_version', 'model', 'n_class', 'input_size', 'mean',
                 'dataset', 'precision')


def require_onnx():
    """Import onnx and Chainer's onnx_chainer, or say how to install them.

    Returns:
        tuple: The ``onnx`` and ``onnx_chainer`` modules.

    Raises:
        UserError: onnx is missing, or too new for onnx_chainer.
    """
    try:
        import onnx
    except ImportError:
        raise UserError('onnx is not installed; {}'.format(INSTALL))
    try:
        import onnx.mapping  # NOQA: removed in onnx 1.19
    except ImportError:
        raise UserError(
            'onnx {} has no onnx.mapping, which Chainer 7.8.1\'s onnx_chainer '
            'needs; install onnx below 1.19: {}'.format(
                onnx.__version__, INSTALL))
    import onnx_chainer
    return onnx, onnx_chainer


def require_onnxruntime():
    """Import onnxruntime, or say how to install it.

    Raises:
        UserError: onnxruntime is missing.
    """
    try:
        import onnxruntime
    except ImportError:
        raise UserError('onnxruntime is not installed; {}'.format(INSTALL))
    return onnxruntime


def convert_resize_images(params):
    """onnx_chainer converter of ``F.resize_images`` (``ResizeImages``) to
    an ONNX ``Resize`` (opset 11) that samples as Chainer does: bilinear,
    ``align_corners``, to the output size itself (``sizes``, not scale
    factors, which round), the batch and channel axes kept from the input
    so that the batch axis stays dynamic.

    Args:
        params (onnx_chainer.functions.converter.FunctionConverterParams):
            The function node and the names onnx_chainer gives.

    Returns:
        tuple of onnx.NodeProto
    """
    from onnx_chainer import onnx_helper

    func, context = params.func, params.context
    x = params.input_names[0]
    gb = onnx_helper.GraphBuilder()
    shape = gb.op('Shape', [x])
    batch_channels = gb.op('Slice', [
        shape, context.add_const(np.array([0], np.int64), 'starts'),
        context.add_const(np.array([2], np.int64), 'ends')])
    sizes = gb.op('Concat', [
        batch_channels,
        context.add_const(np.array([func.out_H, func.out_W], np.int64),
                          'out_size')], axis=0)
    gb.op('Resize', [x, context.add_const(np.array([], np.float32), 'roi'),
                     context.add_const(np.array([], np.float32), 'scales'),
                     sizes],
          mode='linear', coordinate_transformation_mode='align_corners')
    return gb.nodes(output_names=params.output_names)


#: The converters used instead of onnx_chainer's, by function node name.
CONVERTERS = {'ResizeImages': convert_resize_images}


class ImageToLogits(chainer.Chain):
    """The exported function: mean subtraction, then the network.

    Args:
        model (pspnet.PSPNet): The network.

    Call:
        x: (B, 3, H, W) float32 RGB in [0, 255]. Returns the (B, n_class,
        H, W) float32 logits of ``model.forward(x - model.mean)``.
    """

    def __init__(self, model):
        super(ImageToLogits, self).__init__()
        with self.init_scope():
            self.model = model

    def forward(self, x):
        return self.model.forward(x - self.model.mean)


def _metadata(model):
    dataset = getattr(model, 'dataset', None)
    return {
        'pspnet_version': pspnet.__version__,
        'model': type(model).__name__,
        'n_class': str(model.n_class),
        'input_size': '{},{}'.format(*model.input_size),
        'mean': ','.join(repr(float(v)) for v in np.ravel(model.mean)),
        'dataset': dataset.name if dataset is not None else '',
        'precision': 'float32',
    }


def to_onnx(model, converters=None):
    """Trace a PSPNet into an ONNX graph (see the module's docstring).

    Args:
        model (pspnet.PSPNet): The network, on the CPU; its weights are
            copied into the graph.
        converters (dict or None): onnx_chainer converters by function
            node name; None for :data:`CONVERTERS`, ``{}`` for
            onnx_chainer's own (whose ``Resize`` ignores ``align_corners``).

    Returns:
        onnx.ModelProto: Operator set :data:`OPSET_VERSION`, the input
        :data:`INPUT_NAME` with a dynamic batch axis, the output
        :data:`OUTPUT_NAME`, the weights as initializers, the facts of
        :data:`METADATA_KEYS` as metadata.

    Raises:
        UserError: onnx is missing or too new.
    """
    onnx, onnx_chainer = require_onnx()
    if model.xp is not np:
        raise ValueError('export a model on the CPU (model.to_cpu())')
    converters = CONVERTERS if converters is None else converters
    H, W = model.input_size
    x = np.zeros((1, 3, H, W), dtype=np.float32)
    with warnings.catch_warnings():
        # onnx_chainer's notes on experimental options and on its own
        # resize converter (replaced here).
        warnings.simplefilter('ignore')
        graph = onnx_chainer.export(
            ImageToLogits(model), x, filename=None,
            opset_version=OPSET_VERSION, input_names=INPUT_NAME,
            output_names=OUTPUT_NAME,
            external_converters=converters or None, no_testcase=True)
    # onnx_chainer lists every weight as a graph input too (as IR 3 had
    # to); as inputs they could be overridden and are not folded. The
    # batch axis is made free here: no node depends on it (the resize
    # converter takes it from the input's shape). (onnx_chainer's own
    # input_shapes runs shape inference and two more checks of the whole
    # graph, half the time of an export.)
    del graph.graph.input[:]
    del graph.graph.output[:]
    graph.graph.input.extend([onnx.helper.make_tensor_value_info(
        INPUT_NAME, onnx.TensorProto.FLOAT, ('batch', 3, H, W))])
    graph.graph.output.extend([onnx.helper.make_tensor_value_info(
        OUTPUT_NAME, onnx.TensorProto.FLOAT,
        ('batch', model.n_class, H, W))])
    graph.ir_version = IR_VERSION
    graph.doc_string = (
        'PSPNet ({}). Input {!r}: (batch, 3, {}, {}) float32 RGB in '
        '[0, 255] (the mean is subtracted inside). Output {!r}: (batch, {}, '
        '{}, {}) float32 logits; softmax over axis 1 gives the class '
        'scores.'.format(type(model).__name__, INPUT_NAME, H, W, OUTPUT_NAME,
                         model.n_class, H, W))
    onnx.helper.set_model_props(graph, _metadata(model))
    # onnx_chainer has run onnx.checker on the graph; another run on the
    # changes above would serialize all the weights once more.
    # The traced forward pass's activations stay in reference cycles of
    # the trace until a collection: freed now, before the check, the
    # calibration or the writing need the memory (ResNet101 at 385: 2.8
    # GB less at the peak of an INT8 export).
    gc.collect()
    return graph


def export(model, path, converters=None, check=False):
    """Write the ONNX graph of a PSPNet (:func:`to_onnx`) to ``path``,
    atomically (a failure leaves no file behind, and an existing ``path``
    is replaced only by a complete graph).

    Args:
        model (pspnet.PSPNet): The network, on the CPU.
        path (str): The ``.onnx`` file to write.
        converters (dict or None): See :func:`to_onnx`.
        check (bool): Before writing, run the graph with ONNX Runtime on a
            random image and compare it with the model
            (:func:`check_graph`); needs onnxruntime.

    Returns:
        tuple: The ``onnx.ModelProto`` written, and the
        ``(relative_error, label_agreement)`` of the check (None without).

    Raises:
        UserError: onnx (or for ``check`` onnxruntime) is missing, ``path``
        cannot be written, or the check failed (nothing is written then).
    """
    require_onnx()
    if check:
        require_onnxruntime()
    atomic.check_target(path, '.onnx file')
    try:
        graph = to_onnx(model, converters)
        data = graph.SerializeToString()
        result = None
        if check:
            rng = np.random.RandomState(0)
            result = check_graph(model, data, rng.uniform(
                0, 255, (1, 3) + tuple(model.input_size)).astype(np.float32))
        try:
            atomic.write_atomic(path, lambda f: f.write(data))
        except OSError as e:
            raise atomic.write_error(path, e)
    except MemoryError:
        raise out_of_memory(path, model.input_size[0])
    return graph, result


def out_of_memory(path, input_size=None):
    """The :class:`~pspnet.errors.UserError` of a ``MemoryError`` while
    exporting to ``path`` (nothing is written then)."""
    return UserError(
        'out of memory exporting {}{}; nothing was written; use a smaller '
        '--input-size, or close other programs'.format(
            path, '' if input_size is None else
            ' at input size {}'.format(input_size)))


def read_metadata(graph):
    """The :data:`METADATA_KEYS` facts of an exported graph.

    Args:
        graph (onnx.ModelProto or str or bytes): The graph, its file or
            its bytes.

    Returns:
        dict: str to str.
    """
    onnx, _ = require_onnx()
    if isinstance(graph, bytes):
        graph = onnx.load_from_string(graph)
    elif isinstance(graph, (str, os.PathLike)):
        graph = onnx.load(os.fspath(graph))
    return {p.key: p.value for p in graph.metadata_props}


class ExportedSegmenter(object):
    """Segment images of any size with an exported graph on any runtime,
    with the windows, canvas, flips and scales of :meth:`pspnet.PSPNet.
    predict` (:mod:`pspnet.prediction`).

    Args:
        logits (callable): The graph on a runtime: maps a (B, 3, H, W)
            float32 RGB batch in [0, 255] (H, W the input size) to its
            (B, n_class, H, W) float32 logits.
        input_size (tuple of ints): (H, W) of the graph's input.
        n_class (int): Number of classes.
        mean (numpy.ndarray): (3, 1, 1) float32 mean the graph subtracts
            (ImageNet's for the project's exports).
        flip (bool): Average every window with its horizontal flip (as
            ``PSPNet.flip``).
        scales (tuple of floats or None): As ``PSPNet.scales``.
    """

    def __init__(self, logits, input_size, n_class, mean=IMAGENET_MEAN,
                 flip=True, scales=None):
        self.logits = logits
        self.input_size = tuple(int(s) for s in input_size)
        self.n_class = int(n_class)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.flip = flip
        self.scales = scales

    def _network_scores(self, x):
        # pspnet.prediction passes mean-subtracted windows (padded with
        # zeros); the graph subtracts the mean itself.
        image = x + self.mean
        if not self.flip:
            return self._softmax(image)
        return self._flip_scores(image)

    def _flip_scores(self, image):
        """The scores of the image, then those of its horizontal flip
        (flipped back): pspnet.prediction averages them, adding the first
        before the second is computed (one array of scores held at a
        time)."""
        yield self._softmax(image)
        flipped = np.ascontiguousarray(image[:, :, :, ::-1])
        del image
        yield self._softmax(flipped)[:, :, :, ::-1]

    def _softmax(self, batch):
        """Softmax over the classes of the logits of a (B, 3, H, W) batch,
        computed as ``F.softmax`` does, in the logits' own array (one
        (B, n_class, H, W) float32 array less at the peak of a
        prediction)."""
        y = np.asarray(self.logits(batch), dtype=np.float32)
        if not y.flags.writeable:
            y = y.copy()
        y -= y.max(axis=1, keepdims=True)
        np.exp(y, out=y)
        y /= y.sum(axis=1, keepdims=True)
        return y

    def predict_scores(self, img, progress=None):
        """Class probabilities of one image (see
        :meth:`pspnet.PSPNet.predict_scores`).

        Args:
            img (numpy.ndarray): (3, H, W) RGB, values in [0, 255].
            progress (callable or None): ``progress(done, total)`` after
                each window.

        Returns:
            numpy.ndarray: (n_class, H, W) float32 softmax scores.
        """
        return prediction.predict_scores(
            self._network_scores, img, self.input_size, self.n_class,
            self.mean, self.scales, np, progress)

    def predict(self, imgs, progress=None):
        """Segment images (see :meth:`pspnet.PSPNet.predict`).

        Args:
            imgs (iterable of numpy.ndarray): (3, H, W) RGB images, float
                values in [0, 255]; sizes may differ.
            progress (callable or None): As in :meth:`predict_scores`.

        Returns:
            list of numpy.ndarray: (H, W) int32 labels in [0, n_class).
        """
        return [prediction.predict_labels(
            self._network_scores, img, self.input_size, self.n_class,
            self.mean, self.scales, np, progress) for img in imgs]


class OnnxRuntimeSegmenter(ExportedSegmenter):
    """:class:`ExportedSegmenter` on ONNX Runtime, for a graph written by
    :func:`export`: the input size, class count and mean come from the
    graph.

    Args:
        graph (str or bytes or onnx.ModelProto): An exported ``.onnx``
            file, its bytes, or the graph.
        providers (list or None): ONNX Runtime execution providers; None
            for the CPU.
        flip, scales: See :class:`ExportedSegmenter`.

    Attributes:
        session (onnxruntime.InferenceSession)
    """

    def __init__(self, graph, providers=None, flip=True, scales=None):
        ort = require_onnxruntime()
        if not isinstance(graph, (str, bytes, os.PathLike)):
            graph = graph.SerializeToString()
        elif not isinstance(graph, bytes):
            graph = os.fspath(graph)
        self.session = ort.InferenceSession(
            graph, providers=providers or ['CPUExecutionProvider'])
        (inp,), (out,) = self.session.get_inputs(), self.session.get_outputs()
        if inp.name != INPUT_NAME or out.name != OUTPUT_NAME or not all(
                isinstance(d, int) for d in inp.shape[2:] + out.shape[1:2]):
            raise UserError('this ONNX file is no PSPNet export (input {} {}, '
                            'output {} {}); export one with export_onnx.py'
                            .format(inp.name, inp.shape, out.name, out.shape))
        meta = self.session.get_modelmeta().custom_metadata_map
        mean = IMAGENET_MEAN if 'mean' not in meta else np.array(
            [float(v) for v in meta['mean'].split(',')], dtype=np.float32)
        super(OnnxRuntimeSegmenter, self).__init__(
            self._run, inp.shape[2:], out.shape[1], mean, flip, scales)

    def _run(self, x):
        """The graph's output.

        Args:
            x (numpy.ndarray): (B, 3, H, W) float32 RGB in [0, 255].

        Returns:
            numpy.ndarray: (B, n_class, H, W) float32 logits.
        """
        return self.session.run(
            [OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(
                x, dtype=np.float32)})[0]


#: Largest relative logit error (largest absolute difference over the
#: largest absolute logit) and smallest fraction of equal labels that
#: :func:`check_graph` accepts: float32 arithmetic in another order.
CHECK_TOLERANCE = 1e-4
CHECK_AGREEMENT = 0.999


def compare_with_chainer(model, graph, imgs):
    """Run the graph with ONNX Runtime and the model with Chainer (test
    mode) on the same images; how far apart they are.

    Args:
        model (pspnet.PSPNet): The exported network.
        graph (str or bytes or onnx.ModelProto): Its export.
        imgs (numpy.ndarray): (B, 3, H, W) float32 RGB in [0, 255], H, W
            the input size.

    Returns:
        tuple: ``(relative_error, label_agreement)``: the largest absolute
        difference of the logits over the largest absolute Chainer logit,
        and the fraction of pixels whose argmax agrees.
    """
    return compare_logits(model, OnnxRuntimeSegmenter(graph).logits, imgs)


def compare_logits(model, logits, imgs):
    """:func:`compare_with_chainer` for the graph on any runtime.

    Args:
        model (pspnet.PSPNet): The exported network.
        logits (callable): The graph on a runtime: (B, 3, H, W) float32 RGB
            in [0, 255] to (B, n_class, H, W) float32 logits.
        imgs (numpy.ndarray): (B, 3, H, W) float32 RGB in [0, 255].

    Returns:
        tuple: ``(relative_error, label_agreement)``.
    """
    got = logits(imgs)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        want = model.forward(imgs - model.mean).array
    error = float(np.abs(got - want).max() / np.abs(want).max())
    agreement = float((got.argmax(axis=1) == want.argmax(axis=1)).mean())
    return error, agreement


def check_graph(model, graph, imgs):
    """:func:`compare_with_chainer`, failing beyond
    :data:`CHECK_TOLERANCE` and :data:`CHECK_AGREEMENT`.

    Returns:
        tuple: ``(relative_error, label_agreement)``.

    Raises:
        UserError: The graph does not compute what the model does.
    """
    return check_runtime(model, OnnxRuntimeSegmenter(graph).logits, imgs)


def check_runtime(model, logits, imgs, runtime='onnxruntime'):
    """:func:`compare_logits`, failing beyond :data:`CHECK_TOLERANCE` and
    :data:`CHECK_AGREEMENT`.

    Args:
        model, logits, imgs: See :func:`compare_logits`.
        runtime (str): The runtime's name, for the message.

    Returns:
        tuple: ``(relative_error, label_agreement)``.

    Raises:
        UserError: The graph does not compute what the model does.
    """
    error, agreement = compare_logits(model, logits, imgs)
    if error > CHECK_TOLERANCE or agreement < CHECK_AGREEMENT:
        raise UserError(
            'the exported graph does not compute on {} what the model does '
            '(logits within {:.2g} relative, labels equal on {:.3%} of the '
            'pixels; at most {:g} and at least {:.1%} expected); nothing was '
            'written; report it with your onnx and {} versions'.format(
                runtime, error, agreement, CHECK_TOLERANCE, CHECK_AGREEMENT,
                runtime))
    return error, agreement
