"""PSPNet for Chainer, parameter-compatible with ChainerCV."""

import warnings

#: The package's version (pyproject.toml reads it from here).
__version__ = '0.1.0'

# CuPy 13's CUDA 13 wheels (cupy-cuda13x, the CuPy that runs with Chainer
# 7.8.1's NumPy on today's GPUs) carry no cuDNN, so Chainer runs its own
# CUDA kernels, with the same results. Its three-line warning about that,
# given while Chainer is imported, would only alarm; this filter, set
# before Chainer is imported, is the project's one adaptation to that CuPy.
warnings.filterwarnings('ignore', message='cuDNN is not enabled')

from pspnet.errors import UserError  # NOQA
from pspnet.links import PSPNet  # NOQA
from pspnet.links import PSPNetResNet101  # NOQA
from pspnet.links import PSPNetResNet50  # NOQA
