"""Data-parallel training of PSPNet with ChainerMN (``train_multi.py``)."""

from pspnet.training.augmentation import TrainTransform  # NOQA
from pspnet.training.optimizer import GradientScaling  # NOQA
from pspnet.training.optimizer import setup_optimizer  # NOQA
from pspnet.training.train_chain import TrainChain  # NOQA
