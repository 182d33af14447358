"""The optimizer of the recipe: momentum SGD averaged over processes, weight
decay except on BN scale and shift, faster learning for the new layers."""

import chainer
from chainer import optimizer_hooks

#: Names of BatchNormalization's learned scale and shift; never decayed.
BN_PARAM_NAMES = ('gamma', 'beta')


class GradientScaling(object):
    """Update-rule hook multiplying a parameter's gradient by ``rate``.

    With momentum SGD this is the same as a ``rate`` times larger learning
    rate for that parameter.

    Args:
        rate (float): Factor of the gradient.
    """

    name = 'GradientScaling'
    call_for_each_param = True
    timing = 'pre'

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, rule, param):
        grad = param.grad
        if grad is None:
            return
        with chainer.using_device(param.device):
            grad *= self.rate


def setup_optimizer(train_chain, comm, lr=1e-2, momentum=0.9,
                    weight_decay=1e-4, new_layer_rate=10.0):
    """Build ChainerMN's multi-node momentum SGD for a training chain.

    Every process computes gradients on its batch; the optimizer averages
    them over the processes before the update, so all processes keep the
    same parameters. Weight decay applies to every parameter but BN's
    ``gamma`` and ``beta``; the gradients (decay included) of
    ``train_chain.new_layers`` are scaled by ``new_layer_rate``.

    Args:
        train_chain (pspnet.training.TrainChain): The chain to optimize,
            already on its device.
        comm (chainermn.CommunicatorBase): The processes' communicator.
        lr (float): Initial learning rate.
        momentum (float): Momentum.
        weight_decay (float): L2 weight decay rate.
        new_layer_rate (float): Gradient factor of the new layers.

    Returns:
        The multi-node optimizer, set up on ``train_chain``.
    """
    import chainermn

    optimizer = chainermn.create_multi_node_optimizer(
        chainer.optimizers.MomentumSGD(lr, momentum), comm)
    optimizer.setup(train_chain)
    for param in train_chain.params():
        if param.name not in BN_PARAM_NAMES:
            param.update_rule.add_hook(
                optimizer_hooks.WeightDecay(weight_decay))
    for layer in train_chain.new_layers:
        for param in layer.params():
            param.update_rule.add_hook(GradientScaling(new_layer_rate))
    return optimizer


def synchronize_start(optimizer, comm):
    """Give every process rank 0's parameters before the first update.

    ChainerMN's optimizer would do this broadcast in place of the first
    update; doing it here makes the first iteration (also the first one
    after a resume) a real update on every process.
    """
    target = optimizer.target
    comm.bcast_data(target)
    # Records the parameter set, so the optimizer sees nothing to broadcast.
    optimizer.is_changed(target)
