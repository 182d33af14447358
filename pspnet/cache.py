"""Chainer's dataset cache as ChainerCV lays it out.

Everything goes under ``$CHAINER_DATASET_ROOT/pfnet/chainercv/<name>`` (by
default ``~/.chainer/dataset/pfnet/chainercv/<name>``), the folders
ChainerCV uses, so weights and datasets ChainerCV already downloaded are
reused.
"""

import os

import chainer
import filelock

from pspnet.errors import UserError


def cache_directory(name):
    """``$CHAINER_DATASET_ROOT/pfnet/chainercv/<name>``, created if needed."""
    return chainer.dataset.get_dataset_directory(
        os.path.join('pfnet', 'chainercv', name))


def cache_lock(name):
    """A file lock that concurrent processes (MPI ranks) take before
    filling ``cache_directory(name)``, so only one of them downloads."""
    return filelock.FileLock(
        os.path.join(cache_directory('.lock'), name + '.lock'))


def download(url, fix):
    """Download ``url`` into Chainer's download cache.

    Args:
        url (str): The address.
        fix (str): What the user can do instead, for the error message.

    Returns:
        str: Path of the downloaded file.

    Raises:
        UserError: Offline, or the server failed.
    """
    try:
        return chainer.dataset.cached_download(url)
    except Exception as e:
        raise UserError('could not download {} ({}: {}); {}'.format(
            url, type(e).__name__, e, fix))
