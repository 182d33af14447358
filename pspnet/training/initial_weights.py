"""Where training starts from: ImageNet extractor weights, a local file, or
nothing (decided by :func:`pspnet.pretrained.resolve_weights`), and the
auxiliary head's shape and weights (:func:`plan_auxiliary_head`)."""

import collections
import os
import warnings
import zipfile

import chainer

from pspnet import pretrained
from pspnet.datasets import registry
from pspnet.errors import UserError
from pspnet.training.train_chain import AUX_LINKS
from pspnet.training.train_chain import CHAINERCV_AUX_HEAD
from pspnet.training.train_chain import RES4_CHANNELS


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
        model.n_layer, pretrained_model, n_class=model.n_class,
        input_size=model.input_size, training=True)
    if pretrained_model == 'none':
        warnings.warn(
            'training from scratch (--pretrained-model none): expect far '
            'lower accuracy than from the ImageNet extractor',
            UserWarning)
    plan.load_into(model)
    return plan.description


class AuxiliaryPlan(collections.namedtuple('AuxiliaryPlan', (
        'channels', 'ksize', 'path', 'links', 'description'))):
    """The training chain's auxiliary head: its shape and where its
    weights come from.

    Attributes:
        channels (int): Channels of ``aux_conv1``.
        ksize (int): Kernel of the classifier ``aux_conv2``.
        path (str or None): The npz to load the head from; None leaves it
            random (or to a snapshot).
        links (tuple of str): The links loaded from ``path``: both, or only
            ``aux_conv1`` when the file's classifier has another class count.
        description (str): What is loaded, for the log ('' when nothing).
    """

    __slots__ = ()

    def load_into(self, chain):
        """Load the planned arrays into ``chain``'s auxiliary head (a
        :class:`~pspnet.training.train_chain.TrainChain` of this plan's
        shape), before it is copied for multi-node BN.

        Raises:
            UserError: The file is truncated or corrupt.
        """
        for name in self.links:
            try:
                chainer.serializers.load_npz(self.path, getattr(chain, name),
                                             path=name + '/')
            except (zipfile.BadZipFile, EOFError, ValueError, OSError,
                    KeyError) as e:
                raise UserError('{} is truncated or corrupt ({}); convert it '
                                'again'.format(self.path, e))


def _head_shape(shapes, prefix, where):
    first, second = AUX_LINKS
    conv = shapes.get(prefix + first + '/conv/W')
    classifier = shapes.get(prefix + second + '/W')
    bias = shapes.get(prefix + second + '/b')
    if conv is None or classifier is None or bias is None \
            or len(conv) != 4 or len(classifier) != 4 \
            or conv[1] != RES4_CHANNELS or classifier[1] != conv[0] \
            or classifier[2] != classifier[3] or classifier[2] % 2 != 1:
        raise UserError(
            '{} holds an incomplete or malformed auxiliary head ({}: {}, '
            '{}: {}); convert it again (caffe2npz.py --with-aux) or pass the '
            'model without it'.format(where, prefix + first + '/conv/W',
                                      conv, prefix + second + '/W',
                                      classifier))
    return conv[0], classifier[2], classifier[0]


def plan_auxiliary_head(pretrained_model, n_class, resume_path=None):
    """Decide the auxiliary head of a training run.

    * Resuming: the head of the snapshot (its shape; the snapshot loads the
      values).
    * A PSPNet npz with an auxiliary head (``aux_conv1/...``,
      ``aux_conv2/...``, as ``caffe2npz.py --with-aux`` writes): the file's
      shape and values (the classifier ``aux_conv2`` only for the same
      class count, else it starts random like the main classifier).
    * Otherwise ChainerCV's head (512 channels, 3x3 classifier), random.

    Args:
        pretrained_model (str): ``--pretrained-model``.
        n_class (int): Classes of the run.
        resume_path (str or None): The snapshot resumed from.

    Returns:
        AuxiliaryPlan

    Raises:
        UserError: A malformed auxiliary head in the file or snapshot.
    """
    channels, ksize = CHAINERCV_AUX_HEAD
    if resume_path is not None:
        shapes = pretrained.read_npz_shapes(resume_path)
        conv = [k for k in shapes if k.endswith('/' + AUX_LINKS[0]
                                                 + '/conv/W')]
        if conv:
            prefix = conv[0][:-len(AUX_LINKS[0] + '/conv/W')]
            channels, ksize, _ = _head_shape(shapes, prefix, resume_path)
        return AuxiliaryPlan(channels, ksize, None, (), '')
    if pretrained_model in ('none', registry.EXTRACTOR_PRESET) \
            or pretrained_model in registry.DATASETS \
            or not os.path.isfile(pretrained_model):
        return AuxiliaryPlan(channels, ksize, None, (), '')
    shapes = pretrained.auxiliary_shapes(
        pretrained.read_npz_shapes(pretrained_model))
    if not shapes:
        return AuxiliaryPlan(channels, ksize, None, (), '')
    channels, ksize, found = _head_shape(shapes, '', pretrained_model)
    if found == n_class:
        return AuxiliaryPlan(channels, ksize, pretrained_model, AUX_LINKS,
                             'auxiliary head from {}'.format(
                                 pretrained_model))
    return AuxiliaryPlan(
        channels, ksize, pretrained_model, AUX_LINKS[:1],
        'auxiliary head without its {}-class classifier from {}'.format(
            found, pretrained_model))
