"""Replicas of data-parallel training: multi-node batch normalization and
checking that every process holds the same model."""

import hashlib

import chainer
import numpy as np


def to_multi_node_batch_normalization(link, comm):
    """A copy of a link whose BatchNormalizations are ChainerMN's
    MultiNodeBatchNormalization, which normalizes with the statistics of the
    whole batch over all processes.

    The copies keep the learned ``gamma`` and ``beta``, the running
    ``avg_mean`` and ``avg_var`` and the count ``N`` under the same names,
    so the copy saves the same npz keys as the original.
    """
    from chainermn.links import create_mnbn_model
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
