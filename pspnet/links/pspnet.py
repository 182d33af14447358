"""PSPNet (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017).

The parameter tree is ChainerCV 0.13.1's (``chainercv.experimental.links.
PSPNetResNet50/101``): files saved by either load into the other.
"""

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
from chainer import initializers

from pspnet import inference
from pspnet import pretrained as _pretrained
from pspnet import precision
from pspnet import prediction
from pspnet.datasets.spec import MIN_INPUT_SIZE
from pspnet.errors import UserError
from pspnet.links.conv_2d_bn_activ import Conv2DBNActiv
from pspnet.links.resnet import DilatedResNet

#: Per-channel RGB mean subtracted from images, shape (3, 1, 1), float32.
IMAGENET_MEAN = np.array(
    (123.68, 116.779, 103.939), dtype=np.float32)[:, None, None]

PYRAMID_BINS = (6, 3, 2, 1)


class PyramidPoolingModule(chainer.ChainList):
    """Average pooling at four grid sizes, a 1x1 conv-BN-ReLU per grid,
    bilinear upsampling, and concatenation with the input.

    Children 0 to 3 belong to bins 6, 3, 2 and 1.

    Args:
        in_channels (int): Channels of the feature map (2048).
        feat_size (tuple of ints): (h, w) the pooling windows are sized for:
            the window of bin ``b`` is ``(h // b, w // b)``, stride equal.

    Call:
        x: (B, C, h, w) float32 (float16 in the half-precision layout,
        :mod:`pspnet.precision`). Returns (B, 2 C, h, w), the same dtype.
    """

    def __init__(self, in_channels, feat_size, bins=PYRAMID_BINS,
                 initialW=None):
        out_channels = in_channels // len(bins)
        super(PyramidPoolingModule, self).__init__(*[
            Conv2DBNActiv(in_channels, out_channels, 1, initialW=initialW)
            for _ in bins])
        self.bins = tuple(bins)
        self.ksizes = [(feat_size[0] // b, feat_size[1] // b) for b in bins]

    def forward(self, x):
        H, W = x.shape[2:]
        ys = [x]
        for branch, ksize in zip(self, self.ksizes):
            y = branch(F.average_pooling_2d(x, ksize, ksize))
            ys.append(precision.resize_images(y, (H, W)))
        return F.concat(ys, axis=1)


def _as_size(size):
    if isinstance(size, (list, tuple)):
        size = tuple(int(s) for s in size)
    else:
        size = (int(size), int(size))
    if len(size) != 2 or min(size) < MIN_INPUT_SIZE:
        raise UserError('input size {} is too small; use at least {} (the '
                        'presets use 713 and 473)'.format(size,
                                                          MIN_INPUT_SIZE))
    return size


class PSPNet(chainer.Chain):
    """Pyramid Scene Parsing Network on a dilated ResNet.

    Use :class:`PSPNetResNet50` or :class:`PSPNetResNet101`.

    Args:
        n_class (int): Number of classes. Taken from the weights when
            ``pretrained_model`` is a preset or a file and this is None.
        pretrained_model (str): ``'cityscapes'`` (19 classes, input 713),
            ``'ade20k'`` (150 classes, input 473), ``'imagenet'`` (the
            extractor only; give ``n_class``), the path of an npz file, or
            None for random weights. Presets are downloaded once into
            Chainer's dataset cache. :func:`pspnet.pretrained.resolve_weights`
            decides what is built and loaded; its
            :class:`~pspnet.pretrained.WeightPlan` may be passed instead.
        input_size (int or tuple of ints): (height, width) of the network
            input; by default the size of the dataset the weights were
            trained on (713 Cityscapes, 473 ADE20K and VOC, by preset or
            class count), else 713.
        initialW (callable): Initializer of the convolution weights.

    Attributes:
        n_layer (int): Depth of the dilated ResNet extractor, 50 or 101 (a
            class attribute of :class:`PSPNetResNet50` and
            :class:`PSPNetResNet101`).
        scales (tuple of floats or None): Scales for multi-scale prediction;
            None predicts at the original scale only.
        flip (bool): Average every prediction with that of the horizontally
            flipped image (True, as in ChainerCV).
        mean (numpy.ndarray): (3, 1, 1) float32 mean subtracted from images.
    """

    n_layer = None

    def __init__(self, n_class=None, pretrained_model=None, input_size=None,
                 initialW=None):
        super(PSPNet, self).__init__()
        if isinstance(pretrained_model, _pretrained.WeightPlan):
            plan = pretrained_model
            if plan.n_layer != self.n_layer or n_class not in (
                    None, plan.n_class) or input_size is not None:
                raise ValueError('a WeightPlan fixes depth, n_class and '
                                 'input_size; pass neither of the latter')
        else:
            plan = _pretrained.resolve_weights(
                self.n_layer, pretrained_model, n_class, input_size)
        self.input_size = _as_size(plan.input_size)
        if initialW is None and plan.loads_every_array:
            # Every array is overwritten by the file: skip random init.
            # ImageNet weights cover the extractor only; the new layers
            # keep their random initialization.
            initialW = initializers.Zero()

        self.scales = None
        self.flip = True
        self.mean = IMAGENET_MEAN
        feat_size = (self.input_size[0] // 8, self.input_size[1] // 8)
        with self.init_scope():
            self.extractor = DilatedResNet(self.n_layer, initialW=initialW)
            self.ppm = PyramidPoolingModule(2048, feat_size,
                                            initialW=initialW)
            self.head_conv1 = Conv2DBNActiv(4096, 512, 3, 1, 1,
                                            initialW=initialW)
            self.head_conv2 = L.Convolution2D(512, plan.n_class, 1, 1, 0,
                                              nobias=False,
                                              initialW=initialW)
        plan.load_into(self)
        # Chainer fills a NaN gradient for every parameter it initializes
        # (as much memory as the weights); training makes its own.
        self.cleargrads()

    @property
    def n_class(self):
        return self.head_conv2.out_channels

    def conv_bn_links(self):
        """``(name, Conv2DBNActiv)`` of every convolution followed by batch
        normalization, in network order, named as in the npz files
        (``extractor/conv1_1``, ``extractor/res2/a/conv1``, ...,
        ``ppm/0`` to ``ppm/3`` for bins :attr:`PyramidPoolingModule.bins`,
        ``head_conv1``). The classifier ``head_conv2`` follows them."""
        links = [('extractor/' + name, link)
                 for name, link in self.extractor.conv_bn_links()]
        links.extend(('ppm/{}'.format(i), branch)
                     for i, branch in enumerate(self.ppm))
        links.append(('head_conv1', self.head_conv1))
        return links

    def classify(self, res5, dropout_ratio=0):
        """Logits at feature size from res5: pyramid pooling, the head, and
        dropout before the classifier (training only).

        Args:
            res5: (B, 2048, h, w) float32 features.
            dropout_ratio (float): Dropout before ``head_conv2``; 0 for none.

        Returns:
            chainer.Variable: (B, n_class, h, w) float32 logits.
        """
        h = self.head_conv1(self.ppm(res5))
        if dropout_ratio:
            h = F.dropout(h, dropout_ratio)
        return self.head_conv2(h)

    def forward(self, x):
        """Class scores before softmax.

        Args:
            x: (B, 3, H, W) float32, mean-subtracted RGB (cast to
                :attr:`compute_dtype`).

        Returns:
            chainer.Variable: (B, n_class, H, W) float32 logits.
        """
        _, res5 = self.extractor(precision.cast(x, self.compute_dtype))
        logits = precision.cast(self.classify(res5), np.float32)
        return F.resize_images(logits, x.shape[2:])

    @property
    def compute_dtype(self):
        """The dtype of the convolutions: float32, or float16 after
        :func:`pspnet.precision.to_half`."""
        return self.head_conv2.W.dtype

    def predict(self, imgs, progress=None):
        """Segment images.

        Args:
            imgs (iterable of numpy.ndarray): (3, H, W) RGB images, float
                values in [0, 255]; sizes may differ.
            progress (callable or None): ``progress(done, total)`` after
                each window of each image (see
                :func:`pspnet.prediction.predict_scores`).

        Returns:
            list of numpy.ndarray: (H, W) int32 labels in [0, n_class), one
            per image, each of its image's size.
        """
        with chainer.using_config('train', False), \
                chainer.no_backprop_mode():
            return [prediction.predict_labels(
                self._network_scores, img, self.input_size, self.n_class,
                self.mean, self.scales, self.xp, progress) for img in imgs]

    def predict_scores(self, img, progress=None):
        """Class probabilities of one image, averaged over scales (and flips).

        Images whose long side exceeds the input size are covered by
        sliding windows, smaller ones placed on a canvas
        (:mod:`pspnet.prediction`).

        Args:
            img (numpy.ndarray): (3, H, W) RGB, values in [0, 255].
            progress (callable or None): ``progress(done, total)`` after
                each window.

        Returns:
            numpy.ndarray or cupy.ndarray: (n_class, H, W) float32 softmax
            scores on the model's device.
        """
        with chainer.using_config('train', False), \
                chainer.no_backprop_mode():
            return prediction.predict_scores(
                self._network_scores, img, self.input_size, self.n_class,
                self.mean, self.scales, self.xp, progress)

    #: Predict on the CPU with :mod:`pspnet.inference`: numpy, batch
    #: normalization folded into the convolutions at every call, several
    #: times faster than Chainer's functions, the same labels. It keeps its
    #: work buffers between calls (``pspnet.inference.release_buffers``
    #: frees them). False, a GPU or training mode use ``forward``.
    fast_inference = True

    def _network_scores(self, x):
        """Softmax scores of a batch, flip-averaged when ``self.flip``.

        x: (B, 3, h, w) mean-subtracted array on the model's device.
        Returns (B, n_class, h, w) float32 on the device.
        """
        if (self.fast_inference and not chainer.config.train
                and inference.unsupported_reason(self, x) is None):
            return inference.fast_network_scores(self, x, self.flip)
        scores = lambda batch: F.softmax(self.forward(batch)).array  # NOQA
        if self.flip:
            return prediction.flip_averaged(scores, x, self.xp)
        return scores(x)


class PSPNetResNet50(PSPNet):
    """PSPNet on a dilated ResNet50. See :class:`PSPNet`."""

    n_layer = 50


class PSPNetResNet101(PSPNet):
    """PSPNet on a dilated ResNet101. See :class:`PSPNet`."""

    n_layer = 101
