from pspnet.links.conv_2d_bn_activ import Conv2DBNActiv  # NOQA
from pspnet.links.pspnet import PSPNet  # NOQA
from pspnet.links.pspnet import PSPNetResNet101  # NOQA
from pspnet.links.pspnet import PSPNetResNet50  # NOQA
from pspnet.links.pspnet import PyramidPoolingModule  # NOQA
from pspnet.links.resnet import Bottleneck  # NOQA
from pspnet.links.resnet import DilatedResNet  # NOQA
from pspnet.links.resnet import ResBlock  # NOQA
