"""The options that pick and place a model for prediction, shared by the
demo and evaluation, and the one function that applies them."""

import dataclasses

from pspnet import device
from pspnet import exported
from pspnet import models
from pspnet import precision
from pspnet.errors import UserError

#: The network of ``model=None`` for weights (an export's is in its file).
DEFAULT_MODEL = 'pspnet_resnet101'


@dataclasses.dataclass
class ModelOptions:
    """How to build and run a model for prediction (the flags of the same
    names of demo.py and eval_semantic_segmentation.py).

    Attributes:
        model (str or None): ``'pspnet_resnet50'`` or
            ``'pspnet_resnet101'``; None: :data:`DEFAULT_MODEL`, or the
            network of an exported model.
        pretrained_model (str or None): A preset name, an npz file, or an
            exported model (``.onnx`` on ONNX Runtime, ``.xml`` on
            OpenVINO: :mod:`pspnet.exported`); None takes the preset of
            ``dataset``.
        dataset (str or None): A dataset name or description path, for
            the class names and default weights.
        input_size (int or None): The network input size; None takes the
            dataset's (an export's is in its file).
        scales (tuple of floats or None): Scales whose scores are averaged;
            None predicts at the image's own scale.
        no_flip (bool): Do not average with the horizontal flip.
        dtype (str): ``'float32'`` or ``'float16'``.
        tf32 (bool): Let cuBLAS use TF32 (GPUs).
        gpu (int): GPU id; negative for the CPU.
    """

    model: str = DEFAULT_MODEL
    pretrained_model: str = None
    dataset: str = None
    input_size: int = None
    scales: tuple = None
    no_flip: bool = False
    dtype: str = 'float32'
    tf32: bool = False
    gpu: int = -1

    @classmethod
    def from_namespace(cls, namespace, **changes):
        """The options of the fields of ``namespace`` (parsed flags) that
        this class has, with ``changes`` applied."""
        values = {field.name: getattr(namespace, field.name)
                  for field in dataclasses.fields(cls)
                  if hasattr(namespace, field.name)}
        values.update(changes)
        return cls(**values)


def is_exported(options):
    """Whether ``options.pretrained_model`` is an exported model."""
    return exported.is_exported(options.pretrained_model)


def model_name(options):
    """The ``--model`` name of ``options`` (:data:`DEFAULT_MODEL` for
    None)."""
    return options.model or DEFAULT_MODEL


def check_options(options):
    """Refuse, before anything loads, the flags that do not fit an exported
    model (which runs on the CPU in the precision it was exported in) and a
    missing file.

    Raises:
        UserError: One line naming the flag.
    """
    if not is_exported(options):
        return
    path = options.pretrained_model
    for flag, given in (('--gpu', options.gpu >= 0),
                        ('--dtype float16', options.dtype != 'float32'),
                        ('--tf32', options.tf32)):
        if given:
            raise UserError(
                '{} is for Chainer models; the exported model {} runs on the '
                'CPU in the precision it was exported in (export_onnx.py '
                '--precision); drop {}'.format(flag, path, flag.split()[0]))
    exported.check_path(path)


def _check_exported(options, meta):
    """The flags against an export's metadata."""
    path = options.pretrained_model
    if options.model is not None and options.model != meta.model_name:
        raise UserError('{} is a {} but --model is {}; drop --model or pass '
                        '--model {}'.format(path, meta.model_name,
                                            options.model, meta.model_name))
    if (options.input_size is not None
            and (options.input_size,) * 2 != meta.input_size):
        raise UserError('{} was exported at input size {}x{}; drop '
                        '--input-size or export another'.format(
                            path, *meta.input_size))


def load_exported(options):
    """An exported model of ``options`` on its runtime (ONNX Runtime or
    OpenVINO), with its prediction options.

    Returns:
        tuple: ``(model, lines)``: the
        :class:`pspnet.exported.ExportedModel` and the line that says what
        runs where.

    Raises:
        UserError: See :func:`check_options`, :func:`pspnet.exported.load`;
        a ``--model`` or ``--input-size`` other than the file's.
    """
    check_options(options)
    model = exported.load(
        options.pretrained_model, dataset=options.dataset,
        flip=not options.no_flip, scales=options.scales or None,
        check=lambda meta: _check_exported(options, meta))
    return model, [model.describe()]


def load_model(options, gpu=None):
    """Build the model of ``options`` with its weights, set its prediction
    options, place it on its device and set its precision; or, for an
    exported model, open it on its runtime (:func:`load_exported`).

    Args:
        options (ModelOptions): What to build.
        gpu (int or None): The GPU to use instead of ``options.gpu`` (the
            local rank's under MPI).

    Returns:
        tuple: ``(model, lines)``: the :class:`pspnet.PSPNet` (or
        :class:`pspnet.exported.ExportedModel`) and the lines that say on
        what it runs (the GPU, cuDNN, TF32, float16), for the start of the
        output.

    Raises:
        UserError: Weights that do not fit, a missing GPU, an unknown
        dtype.
    """
    if is_exported(options):
        return load_exported(options)
    gpu = options.gpu if gpu is None else gpu
    model = models.build_model(model_name(options), options.dataset,
                               options.pretrained_model, options.input_size)
    model.flip = not options.no_flip
    if options.scales:
        model.scales = options.scales
    device.use_gpu(model, gpu)
    lines = precision.setup_inference(model, options.dtype, options.tf32,
                                      gpu)
    return model, lines
