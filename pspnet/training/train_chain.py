"""PSPNet's training loss: the main head plus an auxiliary head on res4."""

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
from chainer import initializers
import numpy as np

from pspnet import precision
from pspnet.links import Conv2DBNActiv
from pspnet.training.augmentation import IGNORE_LABEL

#: Channels of the res4 feature map the auxiliary head reads.
RES4_CHANNELS = 1024

#: Link names of the auxiliary head's two convolutions, which are also the
#: npz keys' prefixes of a PSPNet file that carries the head
#: (``caffe2npz.py --with-aux``).
AUX_LINKS = ('aux_conv1', 'aux_conv2')

#: (channels, classifier kernel) of the auxiliary head: ChainerCV's
#: training recipe, and the original Caffe models' (``conv4_{n+1}``: 3x3 to
#: 256 channels, ``conv6_1``: 1x1 to the classes).
CHAINERCV_AUX_HEAD = (512, 3)
CAFFE_AUX_HEAD = (256, 1)


class TrainChain(chainer.Chain):
    """A PSPNet with an auxiliary head, computing the training loss.

    The chain runs the model's parts itself (extractor, pyramid pooling,
    head) so that it can add dropout before the classifier without changing
    the model: the model's parameter tree, and so the files it saves, stay
    those of the inference link. The auxiliary head (3x3 conv-BN-ReLU to
    ``aux_channels`` channels, dropout, ``aux_ksize`` conv to the classes,
    with a bias) reads res4 and lives in this chain only.

    The loss is ``main + aux_weight * aux``, both softmax cross entropies of
    the logits upsampled (bilinear) to the input size, ignoring
    :data:`~pspnet.training.augmentation.IGNORE_LABEL`, pixels weighted
    by ``class_weight`` of their class when given. It reports ``loss``,
    ``main_loss`` and ``aux_loss``.

    Args:
        model (pspnet.PSPNet): The network to train.
        aux_weight (float): Weight of the auxiliary loss (0.4).
        dropout_ratio (float): Dropout before both classifiers (0.1).
        initialW (callable): Initializer of the auxiliary convolutions;
            He normal by default.
        aux_channels (int): Channels of the auxiliary head's first
            convolution (512 as ChainerCV; 256 in the Caffe models).
        aux_ksize (int): Kernel of its classifier (3 as ChainerCV; 1 in the
            Caffe models).
        class_weight (sequence of float or None): (n_class,) weight of each
            class in both cross entropies (None: all 1).

    Call:
        imgs: (B, 3, H, W) float32 mean-subtracted RGB. labels: (B, H, W)
        int32 in [-1, n_class - 1]. Returns a scalar float32 Variable.
    """

    def __init__(self, model, aux_weight=0.4, dropout_ratio=0.1,
                 initialW=None, aux_channels=CHAINERCV_AUX_HEAD[0],
                 aux_ksize=CHAINERCV_AUX_HEAD[1],
                 class_weight=None):
        super(TrainChain, self).__init__()
        self.n_class = model.n_class
        self.set_class_weight(class_weight)
        if initialW is None:
            initialW = initializers.HeNormal()
        self.aux_weight = aux_weight
        self.dropout_ratio = dropout_ratio
        with self.init_scope():
            self.model = model
            self.aux_conv1 = Conv2DBNActiv(
                RES4_CHANNELS, aux_channels, 3, 1, 1, initialW=initialW)
            self.aux_conv2 = L.Convolution2D(
                aux_channels, model.n_class, aux_ksize, 1, aux_ksize // 2,
                initialW=initialW)

    def set_class_weight(self, class_weight):
        """Weigh the pixels of class c by ``class_weight[c]`` in both
        losses ((n_class,) floats, or None for all 1). Not a persistent
        value: snapshots and model files do not change."""
        if class_weight is not None:
            class_weight = np.asarray(class_weight, dtype=np.float32)
            if class_weight.shape != (self.n_class,):
                raise ValueError('class_weight must have {} values'.format(
                    self.n_class))
        self.class_weight = class_weight

    @property
    def new_layers(self):
        """The layers not in an ImageNet extractor: pyramid pooling, main
        head and auxiliary head (they learn ten times faster)."""
        model = self.model
        return [model.ppm, model.head_conv1, model.head_conv2,
                self.aux_conv1, self.aux_conv2]

    def logits(self, imgs):
        """Main and auxiliary logits, (B, n_class, H, W) float32 each
        (also in the half-precision layout of :mod:`pspnet.precision`,
        whose float16 logits are cast before upsampling)."""
        model = self.model
        res4, res5 = model.extractor(precision.cast(imgs,
                                                    model.compute_dtype))
        main = model.classify(res5, self.dropout_ratio)
        aux = self.aux_conv2(F.dropout(self.aux_conv1(res4),
                                       self.dropout_ratio))
        size = imgs.shape[2:]
        return (F.resize_images(precision.cast(main, np.float32), size),
                F.resize_images(precision.cast(aux, np.float32), size))

    def forward(self, imgs, labels):
        main, aux = self.logits(imgs)
        weight = (None if self.class_weight is None
                  else self.xp.asarray(self.class_weight, dtype=main.dtype))
        main_loss = F.softmax_cross_entropy(
            main, labels, ignore_label=IGNORE_LABEL, class_weight=weight)
        aux_loss = F.softmax_cross_entropy(
            aux, labels, ignore_label=IGNORE_LABEL, class_weight=weight)
        loss = main_loss + self.aux_weight * aux_loss
        chainer.report({'loss': loss, 'main_loss': main_loss,
                        'aux_loss': aux_loss}, self)
        return loss
