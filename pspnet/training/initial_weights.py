"""Where training starts from: ImageNet extractor weights, a local file, or
nothing (decided by :func:`pspnet.pretrained.resolve_weights`)."""

import warnings

from pspnet import pretrained


def load_initial_weights(model, pretrained_model):
    """Load the weights a training run starts from into a fresh PSPNet.

    Args:
        model (pspnet.PSPNet): A randomly initialized model.
        pretrained_model (str): One of

            * ``'imagenet'``: ChainerCV's ImageNet-trained extractor of the
              model's depth (downloaded once); the pyramid pooling module
              and the head stay random.
            * a dataset with published weights (``'cityscapes'``,
              ``'ade20k'``), or a path to a PSPNet npz (keys
              ``extractor/...``, ``ppm/...``, ``head_conv1/...``,
              ``head_conv2/...``): loaded whole when its class count is the
              model's (fine-tuning); otherwise all but the classifier
              ``head_conv2``, which stays random.
            * a path to an extractor npz (keys ``conv1_1/conv/W``,
              ``res2/a/...``, as the ImageNet files): loaded into the
              extractor.
            * ``'none'``: nothing; training from scratch, with a warning.

    Returns:
        str: What was loaded, for the log (e.g. ``'imagenet extractor'``).

    Raises:
        UserError: Offline without the cached ImageNet file, a missing,
        corrupt or unfitting file.
    """
    plan = pretrained.resolve_weights(
        model._n_layer, pretrained_model, n_class=model.n_class,
        input_size=model.input_size, training=True)
    if pretrained_model == 'none':
        warnings.warn(
            'training from scratch (--pretrained-model none): expect far '
            'lower accuracy than from the ImageNet extractor',
            UserWarning)
    plan.load_into(model)
    return plan.description
