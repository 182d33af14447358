import chainer
import chainer.functions as F
import chainer.links as L


class Conv2DBNActiv(chainer.Chain):
    """Convolution, batch normalization and an activation, in that order.

    The children are named ``conv`` and ``bn`` as in ChainerCV, so their
    parameters serialize as ``conv/W``, ``bn/gamma``, ``bn/beta``,
    ``bn/avg_mean``, ``bn/avg_var`` and ``bn/N``.

    Args:
        in_channels (int or None): Input channels; None infers them at the
            first call.
        out_channels (int): Output channels.
        ksize (int): Kernel size.
        stride (int): Stride.
        pad (int): Zero padding on each side.
        dilate (int): Dilation of the kernel.
        initialW (callable): Initializer of the convolution weight.
        activ (callable or None): Activation; None for none.

    Training over several processes swaps ``bn`` for ChainerMN's
    multi-node batch normalization (``chainermn.links.create_mnbn_model``),
    which keeps the names.
    """

    def __init__(self, in_channels, out_channels, ksize, stride=1, pad=0,
                 dilate=1, initialW=None, activ=F.relu):
        super(Conv2DBNActiv, self).__init__()
        self.activ = activ
        with self.init_scope():
            self.conv = L.Convolution2D(
                in_channels, out_channels, ksize, stride, pad, nobias=True,
                initialW=initialW, dilate=dilate)
            self.bn = L.BatchNormalization(out_channels)

    def forward(self, x):
        h = self.bn(self.conv(x))
        if self.activ is not None:
            h = self.activ(h)
        return h
