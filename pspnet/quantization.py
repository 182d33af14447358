"""Low-precision exports: INT8 by post-training static quantization
calibrated on a dataset's images, bfloat16 on OpenVINO, OpenVINO's file
format, and how far a low-precision model's labels are from float32's.

- INT8: ONNX Runtime's quantizer (``onnxruntime.quantization``) turns the
  float32 graph of :func:`pspnet.onnx_export.to_onnx` into a QDQ graph
  (QuantizeLinear/DequantizeLinear pairs around every quantized operation;
  operator set 13): weights int8, symmetric, one scale per output channel;
  activations uint8, their ranges the minimum and maximum over the
  calibration windows. Batch normalization is folded into the
  convolutions first (ONNX Runtime's graph optimizer). The classifier (the
  last convolution) and the final upsampling stay float32, so the logits
  whose argmax gives the labels are not rounded to 256 levels. ONNX
  Runtime runs the QDQ graph in INT8 (``.onnx``), and so does OpenVINO,
  which saves it in its own format (``.xml``).
- The calibration windows are what :meth:`pspnet.PSPNet.predict` gives
  the network for each image at its own scale (the sliding windows of a
  large image, or the canvas of a small one, mean padding included;
  :func:`calibration_windows`): the same preprocessing as prediction.
- bfloat16: the float32 graph on OpenVINO with
  ``INFERENCE_PRECISION_HINT=bf16`` (:data:`pspnet.exported.OPENVINO_HINTS`),
  for CPUs with bfloat16 units.
- :func:`compare` measures a low-precision model against float32 on a
  labelled split: both mean IoUs and the fraction of pixels whose labels
  agree.

Needs onnx, onnxruntime (INT8) and openvino (``.xml``, bf16) from
``requirements-extras.txt``.
"""

import logging
import os
import tempfile

import numpy as np

from pspnet import atomic
from pspnet import exported
from pspnet import onnx_export
from pspnet import prediction
from pspnet import progress as progress_bars
from pspnet.evaluations import confusion as confusion_matrix
from pspnet.evaluations import semantic_segmentation
from pspnet.errors import UserError

#: Operator set of the INT8 graph: per-channel QuantizeLinear and
#: DequantizeLinear (their ``axis``) need 13.
INT8_OPSET = 13
#: IR version of operator set 13 (onnx 1.8).
INT8_IR_VERSION = 7


def spread_indices(n_items, n):
    """``n`` indices spread evenly over ``range(n_items)`` (first and last
    included), all of them when ``n >= n_items``.

    Returns:
        list of ints, increasing, no repeats.
    """
    if n >= n_items:
        return list(range(n_items))
    if n == 1:
        return [0]
    return sorted({int(round(i * (n_items - 1) / (n - 1))) for i in range(n)})


def calibration_windows(dataset, indices, input_size, mean, progress=None):
    """The network inputs of :meth:`pspnet.PSPNet.predict` for images of a
    dataset, at their own scale and without flips: the sliding windows of
    an image larger than the input size, the canvas of a smaller one
    (:func:`pspnet.prediction.predict_scores`), with the mean added back,
    since the graph subtracts it.

    Args:
        dataset: Items ``(img, label)``, img (3, H, W) float32 RGB in
            [0, 255].
        indices (sequence of ints): The images.
        input_size (tuple of ints): (H, W) of the network input.
        mean (numpy.ndarray): (3, 1, 1) float32 mean.
        progress (callable or None): ``progress(n_images_done)`` after the
            windows of each image.

    Yields:
        numpy.ndarray: (1, 3, H, W) float32 RGB windows in [0, 255].
    """
    size = tuple(input_size)
    mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    for done, i in enumerate(indices, 1):
        img = dataset[i][0]
        windows = []
        # A bounded stand-in for the scores: prediction only adds them up.
        n_class = 1
        zeros = np.zeros((1, n_class) + size, dtype=np.float32)

        def record(x):
            windows.append(np.ascontiguousarray(x + mean, dtype=np.float32))
            return zeros
        prediction.predict_scores(record, img, size, n_class, mean)
        del img
        for window in windows:
            yield window
        if progress is not None:
            progress(done)


class _Reader(object):
    """ONNX Runtime's calibration data reader over a window generator."""

    def __init__(self, windows):
        self.windows = iter(windows)
        self.count = 0

    def get_next(self):
        window = next(self.windows, None)
        if window is None:
            return None
        self.count += 1
        return {onnx_export.INPUT_NAME: window}

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def require_quantizer():
    """Import onnx and ONNX Runtime's quantizer, or say how to install
    them.

    Raises:
        UserError: onnx or onnxruntime is missing.
    """
    onnx, _ = onnx_export.require_onnx()
    onnx_export.require_onnxruntime()
    try:
        from onnxruntime import quantization
    except ImportError as e:
        raise UserError('onnxruntime\'s quantizer does not import ({}); {}'
                        .format(e, onnx_export.INSTALL))
    return onnx, quantization


def _float_outputs(graph):
    """Names of the nodes that stay float32: the one that writes the
    logits (the final upsampling) and the one before it (the
    classifier)."""
    producer = {out: node for node in graph.graph.node for out in node.output}
    last = producer[onnx_export.OUTPUT_NAME]
    names = [last.name]
    if last.input and last.input[0] in producer:
        names.append(producer[last.input[0]].name)
    return names


def set_metadata(graph, values):
    """Replace the metadata of an ONNX graph by ``values`` (str to str)."""
    del graph.metadata_props[:]
    for key, value in sorted(values.items()):
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, str(value)


def quantize_int8(graph, windows, metadata, workdir):
    """The INT8 QDQ graph of a float32 export, calibrated on ``windows``.

    Args:
        graph (onnx.ModelProto): From :func:`pspnet.onnx_export.to_onnx`.
        windows (iterable of numpy.ndarray): (1, 3, H, W) float32 RGB
            calibration inputs (:func:`calibration_windows`).
        metadata (dict): str to str, written into the graph (the float32
            graph's facts, ``precision`` and what calibrated it).
        workdir (str): A folder for the intermediate graphs.

    Returns:
        tuple: The quantized ``onnx.ModelProto`` (operator set
        :data:`INT8_OPSET`) and the number of calibration windows.

    Raises:
        UserError: The quantizer is missing, or no window came.
    """
    onnx, quantization = require_quantizer()
    from onnx import version_converter
    from onnxruntime.quantization import shape_inference
    float_path = os.path.join(workdir, 'float32.onnx')
    fused_path = os.path.join(workdir, 'fused.onnx')
    int8_path = os.path.join(workdir, 'int8.onnx')
    onnx.save(graph, float_path)
    # Batch normalization folded into the convolutions, shapes inferred
    # (the quantizer needs them); symbolic shape inference (sympy) is for
    # dynamic shapes, which these graphs have only in the batch axis.
    shape_inference.quant_pre_process(float_path, fused_path,
                                      skip_symbolic_shape=True)
    fused = version_converter.convert_version(onnx.load(fused_path),
                                              INT8_OPSET)
    fused.ir_version = INT8_IR_VERSION
    onnx.save(fused, fused_path)
    keep_float = _float_outputs(fused)
    del fused
    reader = _Reader(windows)
    logger = logging.getLogger()
    level = logger.level
    # The quantizer logs advice (pre-processing, which is done) at WARNING.
    logger.setLevel(logging.ERROR)
    try:
        quantization.quantize_static(
            fused_path, int8_path, reader,
            quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            reduce_range=False,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax,
            nodes_to_exclude=keep_float)
    except ValueError:
        if reader.count == 0:
            raise UserError('no calibration images; pass a --calibration '
                            'dataset with images in --calibration-split')
        raise
    finally:
        logger.setLevel(level)
    quantized = onnx.load(int8_path)
    set_metadata(quantized, metadata)
    return quantized, reader.count


def openvino_model(onnx_path, metadata):
    """An ONNX file read by OpenVINO, with ``metadata`` in its
    ``rt_info`` section :data:`pspnet.exported.RT_INFO_SECTION`.

    Returns:
        openvino.Model: It may read its weights from ``onnx_path`` until it
        is saved.
    """
    ov = exported.require_openvino()
    model = ov.Core().read_model(onnx_path)
    for key, value in metadata.items():
        model.set_rt_info(str(value), [exported.RT_INFO_SECTION, key])
    return model


def save_openvino(model, path):
    """Write an OpenVINO model as ``path`` (``.xml``) and the ``.bin`` beside
    it, atomically: the ``.bin`` first, then the ``.xml``, which holds the
    SHA-1 of the ``.bin`` (:data:`pspnet.exported.WEIGHTS_DIGEST_KEY`), so
    that a reader never takes weights of another export. Weights are kept
    as they are (no float16 compression).

    Raises:
        UserError: The files cannot be written; nothing is left behind.
    """
    ov = exported.require_openvino()
    bin_path = exported.weights_path_of(path)
    try:
        with atomic.replaced_file(path) as tmp_xml:
            tmp_bin = os.path.splitext(tmp_xml)[0] + '.bin'
            try:
                # The digest goes into the .xml, which is written again; the
                # .bin of the second save is checked to be the same.
                ov.save_model(model, tmp_xml, compress_to_fp16=False)
                digest = exported.file_digest(tmp_bin)
                model.set_rt_info(digest, [exported.RT_INFO_SECTION,
                                           exported.WEIGHTS_DIGEST_KEY])
                ov.save_model(model, tmp_xml, compress_to_fp16=False)
                if exported.file_digest(tmp_bin) != digest:
                    raise RuntimeError('OpenVINO wrote two different .bin '
                                       'files of one model')
                with open(tmp_xml, 'rb') as f:
                    os.fsync(f.fileno())
                with atomic.replaced_file(bin_path) as tmp_target:
                    with open(tmp_bin, 'rb') as f:
                        os.fsync(f.fileno())
                    os.replace(tmp_bin, tmp_target)
            finally:
                if os.path.exists(tmp_bin):
                    os.remove(tmp_bin)
    except OSError as e:
        raise atomic.write_error(path, e)


def compare(reference, low, dataset, indices, progress=None):
    """A low-precision model against its float32 reference on labelled
    images: each one's mean IoU over the images, and how often their labels
    agree.

    Args:
        reference: The float32 model (``predict`` as
            :meth:`pspnet.PSPNet.predict`).
        low: The low-precision one (:class:`pspnet.exported.ExportedModel`).
        dataset: Items ``(img, label)``, label (H, W) int32, -1 ignored.
        indices (sequence of ints): The images.
        progress (callable or None): ``progress(n_images_done)``.

    Returns:
        dict: ``miou_float32``, ``miou`` (the low-precision model's),
        ``drop`` (points of mean IoU: 100 x the difference),
        ``agreement`` (fraction of all pixels with equal labels),
        ``n_images``, ``n_pixels``.
    """
    n_class = reference.n_class
    matrices = [confusion_matrix.SemanticSegmentationConfusion(n_class)
                for _ in range(2)]
    equal = pixels = 0
    for done, i in enumerate(indices, 1):
        img, label = dataset[i]
        labels = [model.predict([img])[0] for model in (reference, low)]
        for matrix, pred in zip(matrices, labels):
            matrix.update(pred, label)
        equal += int((labels[0] == labels[1]).sum())
        pixels += labels[0].size
        if progress is not None:
            progress(done)
    mious = [semantic_segmentation.semantic_segmentation_metrics(
        m.matrix)['miou'] for m in matrices]
    return {'miou_float32': mious[0], 'miou': mious[1],
            'drop': 100 * (mious[0] - mious[1]),
            'agreement': equal / max(pixels, 1), 'n_images': len(indices),
            'n_pixels': pixels}


def progress_bar(total, desc):
    """A bar over ``total`` images and its ``progress(done)``."""
    bar = progress_bars.bar(total=total, unit='image', desc=desc)

    def progress(done):
        bar.update(done - bar.n)
    return bar, progress


def workdir():
    """A temporary folder for intermediate graphs (removed by the caller's
    ``with``)."""
    return tempfile.TemporaryDirectory(prefix='pspnet-export-')
