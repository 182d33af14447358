"""The options that pick and place a model for prediction, shared by the
demo and evaluation, and the one function that applies them."""

import dataclasses

from pspnet import device
from pspnet import models
from pspnet import precision


@dataclasses.dataclass
class ModelOptions:
    """How to build and run a model for prediction (the flags of the same
    names of demo.py and eval_semantic_segmentation.py).

    Attributes:
        model (str): ``'pspnet_resnet50'`` or ``'pspnet_resnet101'``.
        pretrained_model (str or None): A preset name or an npz file; None
            takes the preset of ``dataset``.
        dataset (str or None): A dataset name or description path, for
            the class names and default weights.
        input_size (int or None): The network input size; None takes the
            dataset's.
        scales (tuple of floats or None): Scales whose scores are averaged;
            None predicts at the image's own scale.
        no_flip (bool): Do not average with the horizontal flip.
        dtype (str): ``'float32'`` or ``'float16'``.
        tf32 (bool): Let cuBLAS use TF32 (GPUs).
        gpu (int): GPU id; negative for the CPU.
    """

    model: str = 'pspnet_resnet101'
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


def load_model(options, gpu=None):
    """Build the model of ``options`` with its weights, set its prediction
    options, place it on its device and set its precision.

    Args:
        options (ModelOptions): What to build.
        gpu (int or None): The GPU to use instead of ``options.gpu`` (the
            local rank's under MPI).

    Returns:
        tuple: ``(model, lines)``: the :class:`pspnet.PSPNet` and the lines
        that say on what it runs (the GPU, cuDNN, TF32, float16), for the
        start of the output.

    Raises:
        UserError: Weights that do not fit, a missing GPU, an unknown
        dtype.
    """
    gpu = options.gpu if gpu is None else gpu
    model = models.build_model(options.model, options.dataset,
                               options.pretrained_model, options.input_size)
    model.flip = not options.no_flip
    if options.scales:
        model.scales = options.scales
    device.use_gpu(model, gpu)
    lines = precision.setup_inference(model, options.dtype, options.tf32,
                                      gpu)
    return model, lines
