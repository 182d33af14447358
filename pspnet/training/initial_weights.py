"""Where training starts from: ImageNet extractor weights, a local file, or
nothing."""

import os
import warnings

from pspnet import pretrained
from pspnet.errors import UserError

_HEAD = 'head_conv2/'


def load_initial_weights(model, pretrained_model):
    """Load the weights a training run starts from into a fresh PSPNet.

    Args:
        model (pspnet.PSPNet): A randomly initialized model.
        pretrained_model (str): One of

            * ``'imagenet'``: ChainerCV's ImageNet-trained extractor of the
              model's depth (downloaded once); the pyramid pooling module
              and the head stay random.
            * a path to an extractor npz (keys ``conv1_1/conv/W``,
              ``res2/a/...``, as the ImageNet files): loaded into the
              extractor.
            * a path to a PSPNet npz (keys ``extractor/...``, ``ppm/...``,
              ``head_conv1/...``, ``head_conv2/...``): loaded whole when its
              class count is the model's (fine-tuning); otherwise all but
              the classifier ``head_conv2``, which stays random.
            * ``'none'``: nothing; training from scratch, with a warning.

    Returns:
        str: What was loaded, for the log (e.g. ``'imagenet extractor'``).

    Raises:
        UserError: Offline without the cached ImageNet file, a missing,
        corrupt or unfitting file.
    """
    depth = model._n_layer
    what = 'a ResNet{} extractor'.format(depth)
    if pretrained_model == 'none':
        warnings.warn(
            'training from scratch (--pretrained-model none): expect far '
            'lower accuracy than from the ImageNet extractor',
            UserWarning)
        return 'none (random initialization)'
    if pretrained_model == 'imagenet':
        _, path = pretrained.resolve('imagenet', depth)
        pretrained.load_npz(model.extractor, path, what)
        return 'imagenet extractor ({})'.format(path)
    path = pretrained_model
    if not os.path.isfile(path):
        raise UserError(
            'weight file {!r} does not exist; pass imagenet, none, or an '
            'existing extractor or PSPNet .npz'.format(path))
    shapes = pretrained.read_npz_shapes(path)
    if 'conv1_1/conv/W' in shapes:
        pretrained.load_npz(model.extractor, path, what)
        return 'extractor from {}'.format(path)
    if 'extractor/conv1_1/conv/W' not in shapes:
        raise UserError(
            '{} holds neither a ResNet extractor (conv1_1/conv/W, ...) nor a '
            'PSPNet (extractor/conv1_1/conv/W, ...); pass weights saved by '
            'this project or ChainerCV'.format(path))
    n_class = shapes.get(_HEAD + 'W', (None,))[0]
    if n_class == model.n_class:
        pretrained.load_npz(model, path, 'PSPNetResNet{} with {} classes'
                            .format(depth, model.n_class))
        return 'whole PSPNet from {}'.format(path)
    pretrained.load_npz(model, path, 'PSPNetResNet{}'.format(depth),
                        except_prefix=_HEAD)
    return 'PSPNet without its {}-class classifier from {}'.format(
        n_class, path)
