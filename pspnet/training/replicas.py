"""Replicas of data-parallel training: multi-node batch normalization and
checking that every process holds the same model."""

import hashlib

import chainer
import numpy as np


def _stable_statistics(impl_class):
    class StableStatistics(impl_class):
        def get_mean_and_var(self, axis, gamma, x, xp, interm_dtype):
            if x.dtype != gamma.dtype:
                x = x.astype(gamma.dtype)
            statistics = super(StableStatistics, self).get_mean_and_var
            mean, _ = statistics(axis, gamma, x, xp, interm_dtype)
            shape = [1 if i in axis else n for i, n in enumerate(x.shape)]
            shift, var = statistics(axis, gamma, x - mean.reshape(shape), xp,
                                    interm_dtype)
            return mean + shift, var
    StableStatistics.__name__ = impl_class.__name__ + 'StableStatistics'
    StableStatistics.stable_statistics = True
    return StableStatistics


def enable_stable_multi_node_statistics():
    """Make ChainerMN's multi-node batch normalization compute the variance
    without cancellation.

    ChainerMN 7.8.1 averages ``x`` and ``x ** 2`` over all processes in one
    reduction and takes ``E[x ** 2] - E[x] ** 2``: in float32, for
    activations that are large next to their spread (e.g. a pyramid bin of
    one pixel at batch 2, early in training from scratch), that difference
    is rounding noise, often negative, and the normalization is NaN
    (``invalid value encountered in sqrt``). After this call both of its
    implementations (MPI and NCCL) average the mean first, then the
    statistics of ``x`` minus that mean (two reductions of 2 x channels
    values instead of one), and cast a float16 input to the float32 of
    ``gamma`` first, as Chainer's own batch normalization computes its
    statistics. Idempotent.
    """
    from chainermn.functions import batch_normalization as mnbn
    for name in ('_MpiImpl', '_NcclImpl'):
        impl = getattr(mnbn, name)
        if not getattr(impl, 'stable_statistics', False):
            setattr(mnbn, name, _stable_statistics(impl))


def to_multi_node_batch_normalization(link, comm):
    """A copy of a link whose BatchNormalizations are ChainerMN's
    MultiNodeBatchNormalization, which normalizes with the statistics of the
    whole batch over all processes, computed without cancellation
    (:func:`enable_stable_multi_node_statistics`).

    The copies keep the learned ``gamma`` and ``beta``, the running
    ``avg_mean`` and ``avg_var`` and the count ``N`` under the same names,
    so the copy saves the same npz keys as the original.
    """
    from chainermn.links import create_mnbn_model
    enable_stable_multi_node_statistics()
    experimental_warning = chainer.disable_experimental_feature_warning
    chainer.disable_experimental_feature_warning = True
    try:
        return create_mnbn_model(link, comm)
    finally:
        chainer.disable_experimental_feature_warning = experimental_warning


def state_digests(link):
    """SHA-1 of every array ``save_npz`` would write for a link.

    Returns:
        dict: npz key to hex digest, for parameters and persistent values.
    """
    target = chainer.serializers.DictionarySerializer()
    target.save(link)
    digests = {}
    for key, value in sorted(target.target.items()):
        array = np.ascontiguousarray(chainer.backends.cuda.to_cpu(value))
        digests[key] = hashlib.sha1(array.tobytes()).hexdigest()
    return digests


def compare_replicas(comm, link):
    """Compare a link's arrays across processes.

    Returns (on rank 0; None elsewhere):
        dict: ``n_processes``, ``params_identical``,
        ``persistents_identical`` (BN running statistics and counts) and
        ``differing``, the npz keys that differ on some process.
    """
    digests = state_digests(link)
    gathered = comm.gather_obj(digests) if comm.size > 1 else [digests]
    if comm.rank != 0:
        return None
    param_keys = {name.lstrip('/') for name, _ in link.namedparams()}
    differing = sorted(key for key in digests
                       if any(d.get(key) != digests[key] for d in gathered))
    return {
        'n_processes': comm.size,
        'params_identical': not any(k in param_keys for k in differing),
        'persistents_identical': not any(k not in param_keys
                                         for k in differing),
        'differing': differing,
    }
