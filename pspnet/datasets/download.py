"""Where datasets live under Chainer's dataset root, and fetching the ones
that may be redistributed.

``data_dir='auto'`` means ``$CHAINER_DATASET_ROOT/pfnet/chainercv/<name>``
(by default ``~/.chainer/dataset/pfnet/chainercv/<name>``), the folders
ChainerCV uses, so data ChainerCV has already downloaded is reused.
"""

import shutil

from pspnet.cache import cache_directory
from pspnet.cache import cache_lock
from pspnet.cache import download
from pspnet.errors import UserError


#: ``$CHAINER_DATASET_ROOT/pfnet/chainercv/<name>``, created if needed.
dataset_root = cache_directory


def fetch_dataset(name, url, is_extracted):
    """Download and extract a dataset archive once into its root.

    Concurrent processes (MPI ranks) wait on a file lock, so only one
    downloads.

    Args:
        name (str): Folder under ``pfnet/chainercv`` (``'ade20k'``).
        url (str): Archive URL (.zip or .tar).
        is_extracted (callable): ``is_extracted(root)`` is True once the
            archive's content is in place.

    Returns:
        str: The dataset root.

    Raises:
        UserError: The download failed (offline, server error) or the
        archive is unusable.
    """
    with cache_lock(name):
        root = dataset_root(name)
        if is_extracted(root):
            return root
        archive = download(url, 'download it elsewhere, extract it into {} '
                           'and try again, or pass --data-dir'.format(root))
        archive_format = 'zip' if url.endswith('.zip') else 'tar'
        try:
            shutil.unpack_archive(archive, root, archive_format)
        except Exception as e:
            raise UserError(
                'could not extract {} ({}: {}); delete it so that it is '
                'downloaded again'.format(archive, type(e).__name__, e))
        if not is_extracted(root):
            raise UserError(
                'the archive from {} does not hold the expected folders; '
                'extract the dataset into {} by hand'.format(url, root))
    return root
