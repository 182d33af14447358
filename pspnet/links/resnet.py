"""The dilated ResNet feature extractor of PSPNet (output stride 8).

The links name their children as ChainerCV does and tell their own
structure (:meth:`DilatedResNet.conv_bn_links`), which the fast inference
path and the Caffe converter walk instead of restating it.
"""

import chainer
import chainer.functions as F

from pspnet.links.conv_2d_bn_activ import Conv2DBNActiv


class Bottleneck(chainer.Chain):
    """A ResNet bottleneck unit: 1x1 reduce, 3x3 (strided, dilated), 1x1
    increase, plus the identity or a 1x1 projection (``residual_conv``).

    The stride sits on the 3x3 convolution, as in PSPNet's Caffe models.
    """

    #: Children in the order of the computation (``residual_conv`` only
    #: in the projection units).
    conv_names = ('conv1', 'conv2', 'conv3', 'residual_conv')

    def __init__(self, in_channels, mid_channels, out_channels, stride=1,
                 dilate=1, initialW=None, projection=False):
        super(Bottleneck, self).__init__()
        with self.init_scope():
            self.conv1 = Conv2DBNActiv(
                in_channels, mid_channels, 1, initialW=initialW)
            self.conv2 = Conv2DBNActiv(
                mid_channels, mid_channels, 3, stride, dilate, dilate,
                initialW=initialW)
            self.conv3 = Conv2DBNActiv(
                mid_channels, out_channels, 1, initialW=initialW,
                activ=None)
            if projection:
                self.residual_conv = Conv2DBNActiv(
                    in_channels, out_channels, 1, stride, initialW=initialW,
                    activ=None)

    @property
    def projection(self):
        """Whether the shortcut is a 1x1 projection (``residual_conv``)."""
        return hasattr(self, 'residual_conv')

    def conv_bn_links(self):
        """``(name, Conv2DBNActiv)`` of the unit's convolutions, in order."""
        return [(name, getattr(self, name)) for name in self.conv_names
                if hasattr(self, name)]

    def forward(self, x):
        h = self.conv3(self.conv2(self.conv1(x)))
        residual = self.residual_conv(x) if self.projection else x
        return F.relu(h + residual)


def unit_name(index):
    """The child name of unit ``index`` (0-based) of a stage: ``a``, then
    ``b1``, ``b2``..."""
    return 'a' if index == 0 else 'b{}'.format(index)


class ResBlock(chainer.Chain):
    """A ResNet stage: unit ``a`` with a projection, then ``b1``, ``b2``...

    Args:
        n_unit (int): Number of bottleneck units.
        in_channels, mid_channels, out_channels (int): Channel counts.
        stride (int): Stride of the first unit.
        dilate (int): Dilation of every 3x3 convolution of the stage.
    """

    def __init__(self, n_unit, in_channels, mid_channels, out_channels,
                 stride=1, dilate=1, initialW=None):
        super(ResBlock, self).__init__()
        self.unit_names = [unit_name(i) for i in range(n_unit)]
        with self.init_scope():
            self.a = Bottleneck(
                in_channels, mid_channels, out_channels, stride, dilate,
                initialW, projection=True)
            for name in self.unit_names[1:]:
                setattr(self, name, Bottleneck(
                    out_channels, mid_channels, out_channels, 1, dilate,
                    initialW))

    @property
    def units(self):
        return [getattr(self, name) for name in self.unit_names]

    def forward(self, x):
        for unit in self.units:
            x = unit(x)
        return x


class DilatedResNet(chainer.Chain):
    """ResNet50/101 with a three-convolution stem and dilated res4 and res5.

    Res4 and res5 keep the resolution of res3 (stride 8) and dilate their
    3x3 convolutions by 2 and 4.

    Args:
        n_layer (int): 50 or 101.
        initialW (callable): Initializer of the convolution weights.

    Call:
        x: (B, 3, H, W) float32, mean-subtracted RGB.
        Returns ``(res4, res5)``: (B, 1024, h, w) and (B, 2048, h, w)
        float32, with h = ceil(H / 8) for the usual sizes.
    """

    #: Bottleneck units of res2 to res5 per depth.
    units_per_stage = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
    #: The stem's conv-BN-ReLU children, in order.
    stem_names = ('conv1_1', 'conv1_2', 'conv1_3')
    #: The stages, in order.
    stage_names = ('res2', 'res3', 'res4', 'res5')

    def __init__(self, n_layer, initialW=None):
        super(DilatedResNet, self).__init__()
        if n_layer not in self.units_per_stage:
            raise ValueError('n_layer must be 50 or 101, not {}'.format(
                n_layer))
        self.n_layer = n_layer
        n2, n3, n4, n5 = self.units_per_stage[n_layer]
        kw = dict(initialW=initialW)
        with self.init_scope():
            self.conv1_1 = Conv2DBNActiv(3, 64, 3, 2, 1, **kw)
            self.conv1_2 = Conv2DBNActiv(64, 64, 3, 1, 1, **kw)
            self.conv1_3 = Conv2DBNActiv(64, 128, 3, 1, 1, **kw)
            self.res2 = ResBlock(n2, 128, 64, 256, 1, 1, **kw)
            self.res3 = ResBlock(n3, 256, 128, 512, 2, 1, **kw)
            self.res4 = ResBlock(n4, 512, 256, 1024, 1, 2, **kw)
            self.res5 = ResBlock(n5, 1024, 512, 2048, 1, 4, **kw)

    @property
    def stem(self):
        """The stem's Conv2DBNActiv links, in order."""
        return [getattr(self, name) for name in self.stem_names]

    @property
    def stages(self):
        """The ResBlocks res2 to res5, in order."""
        return [getattr(self, name) for name in self.stage_names]

    def conv_bn_links(self):
        """``(name, Conv2DBNActiv)`` of every convolution, in network order,
        named as in the npz files (``conv1_1``, ``res2/a/conv1``, ...)."""
        links = list(zip(self.stem_names, self.stem))
        for stage_name, stage in zip(self.stage_names, self.stages):
            for name, unit in zip(stage.unit_names, stage.units):
                links.extend(('{}/{}/{}'.format(stage_name, name, conv), link)
                             for conv, link in unit.conv_bn_links())
        return links

    def forward(self, x):
        h = x
        for link in self.stem:
            h = link(h)
        # cover_all=True (Chainer's default) decides the feature size,
        # e.g. 713 -> 357 -> 179 -> 90; the pyramid depends on it.
        h = F.max_pooling_2d(h, ksize=3, stride=2, pad=1)
        h = self.res3(self.res2(h))
        res4 = self.res4(h)
        res5 = self.res5(res4)
        return res4, res5
