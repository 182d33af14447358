"""PSPNet for Chainer, parameter-compatible with ChainerCV."""

from pspnet.errors import UserError  # NOQA
from pspnet.links import PSPNet  # NOQA
from pspnet.links import PSPNetResNet101  # NOQA
from pspnet.links import PSPNetResNet50  # NOQA
