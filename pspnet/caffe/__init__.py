"""Reading PSPNet's original Caffe models (no Caffe needed)."""

from pspnet.caffe.converter import convert_caffemodel  # NOQA
from pspnet.caffe.converter import ConversionReport  # NOQA
