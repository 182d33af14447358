"""A fast CPU inference path for PSPNet in numpy.

Chainer's CPU functions unfold every convolution into a full im2col
buffer, run batch normalization as separate passes and pool through
im2col too. This package computes the same network with batch
normalization folded into the convolutions, 1x1 convolutions as single
GEMMs on channel-major arrays, 3x3 convolutions unfolded in row blocks (or
as per-tap GEMMs), residual additions inside the GEMMs and in-place
activations, one image at a time, with GEMMs from a current OpenBLAS
(:mod:`.blas`). The folded weights are derived from the link's current
parameters at every call, so they never drift from what training updates.

:meth:`pspnet.PSPNet.predict` uses it on the CPU outside training; on a
GPU the plain Chainer path (cuDNN) is used.
"""

from pspnet.inference.network import fast_forward  # NOQA
from pspnet.inference.network import fast_network_scores  # NOQA
from pspnet.inference.network import release_buffers  # NOQA
from pspnet.inference.network import unsupported_reason  # NOQA
