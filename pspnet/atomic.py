"""Atomic file writes: a crash leaves the old complete file or the new
one, never a half-written one.

Data goes to a temporary file next to the target (named with
:data:`TEMP_PREFIX`), which is flushed, synced to disk and renamed over
the target; the folder is synced after the rename.
"""

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
import zipfile

import chainer
import numpy as np

from pspnet.errors import UserError

#: Start of the names of temporary files (what a killed writer leaves).
TEMP_PREFIX = '.tmp-'


def _temp_prefix(path):
    """``.tmp-<name>.<host>.<pid>-``: whose temporary file it is."""
    host = re.sub(r'[^A-Za-z0-9_-]', '_', socket.gethostname())
    return '{}{}.{}.{}-'.format(TEMP_PREFIX, os.path.basename(path), host,
                                os.getpid())


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, another user's
        return True
    return True


def remove_stale_temporaries(folder, name=None):
    """Delete the temporary files that killed writers left in ``folder``.

    Only files of processes of this machine that no longer run are
    removed (a writer still at work, or one on another machine sharing the
    folder, keeps its file).

    Args:
        folder (str): The folder.
        name (str or None): Only the temporaries of this file name; None
            for every file's.

    Returns:
        list of str: The paths removed.
    """
    host = re.sub(r'[^A-Za-z0-9_-]', '_', socket.gethostname())
    pattern = re.compile(r'^{}(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]+)\.'
                         r'(?P<pid>\d+)-'.format(re.escape(TEMP_PREFIX)))
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for entry in names:
        match = pattern.match(entry)
        if not match or match.group('host') != host or (
                name is not None and match.group('name') != name):
            continue
        if _process_alive(int(match.group('pid'))):
            continue
        path = os.path.join(folder, entry)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)  # of replaced_folder
            else:
                os.remove(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path, write):
    """Write a file through ``write(binary_file_object)`` atomically and
    durably, with the usual permissions (umask applied).

    Temporary files that earlier, killed writers of the same file on this
    machine left behind are removed first.

    Raises:
        OSError: The file cannot be written (no folder, no permission, disk
        full); nothing is left behind then.
    """
    with replaced_file(path) as tmp_path:
        with open(tmp_path, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def replaced_file(path):
    """The path of a temporary file next to ``path`` (same extension, so
    that writers that choose the format by it, such as
    ``cv2.VideoWriter``, choose the same), for a writer that opens files
    by name; renamed over ``path`` when the block ends normally, removed
    when it raises or is interrupted.

    Yields:
        str: The temporary path (an empty file, for the writer to replace).
    """
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(folder, os.path.basename(path))
    fd, tmp_path = tempfile.mkstemp(prefix=_temp_prefix(path),
                                    suffix=os.path.splitext(path)[1],
                                    dir=folder)
    os.close(fd)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    _fsync_dir(folder)


@contextlib.contextmanager
def replaced_folder(path):
    """A temporary folder next to ``path`` to fill; when the block ends
    normally it takes the place of ``path`` (an earlier folder there is
    removed), when it raises or is interrupted it is removed.

    Yields:
        str: The temporary folder.
    """
    parent = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(parent, os.path.basename(path))
    tmp_path = tempfile.mkdtemp(prefix=_temp_prefix(path), dir=parent)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o777 & ~umask)
        old = None
        if os.path.isdir(path) and not os.path.islink(path):
            old = tempfile.mkdtemp(prefix=_temp_prefix(path), dir=parent)
            os.replace(path, os.path.join(old, 'old'))
        os.replace(tmp_path, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise
    _fsync_dir(parent)


def write_npz(file, obj, compression=True):
    """Write what ``chainer.serializers.save_npz`` writes (the same arrays
    and names, readable by ``load_npz``) to a binary file object.

    Like ``save_npz``, a dict (what Chainer's snapshot extension passes
    its writer) is taken as already serialized. Unlike ``numpy.savez``, the
    archive is closed also when writing fails (a full disk), so no
    half-open archive is left to fail again later.
    """
    if isinstance(obj, dict):
        target = obj
    else:
        serializer = chainer.serializers.DictionarySerializer()
        serializer.save(obj)
        target = serializer.target
    mode = zipfile.ZIP_DEFLATED if compression else zipfile.ZIP_STORED
    with zipfile.ZipFile(file, mode='w', compression=mode,
                         allowZip64=True) as archive:
        for key, value in target.items():
            with archive.open(key + '.npy', 'w', force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value),
                                          allow_pickle=True)


def save_npz_atomic(path, obj, compression=True):
    """``chainer.serializers.save_npz`` through :func:`write_atomic`."""
    write_atomic(path, lambda f: write_npz(f, obj, compression))


def save_json_atomic(path, obj):
    """Write ``obj`` as indented JSON through :func:`write_atomic`."""
    text = json.dumps(obj, indent=2, sort_keys=True) + '\n'
    write_atomic(path, lambda f: f.write(text.encode('utf-8')))


def is_disk_full(error):
    """Whether an OSError says the disk, the quota or the file size limit
    is full."""
    return getattr(error, 'errno', None) in (errno.ENOSPC, errno.EDQUOT,
                                             errno.EFBIG)


def check_target(path, kind):
    """Check, before long work, that :func:`write_atomic` may create
    ``path``: its folder exists and may be written to, and ``path`` is no
    folder.

    Args:
        path (str): The file to write.
        kind (str): What it is, for the message (``'.npz file'``).

    Raises:
        UserError: One line naming the problem and the fix.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError('the folder of {} does not exist; create it or '
                        'write elsewhere'.format(path))
    if os.path.isdir(path):
        raise UserError('{} is a folder; give the path of the {} to '
                        'write'.format(path, kind))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError('cannot write into {} (permission denied); choose a '
                        'folder you may write to'.format(folder))


def check_output_folder(folder, flag='--output'):
    """Check, before long work, that ``folder`` exists as a folder that may
    be written to, or can be created (no part of it is a file, and the
    nearest existing folder above it may be written to).

    Raises:
        UserError: One line naming the problem and the fix.
    """
    folder = os.path.abspath(folder or '.')
    path = folder
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path):
        raise UserError('cannot write into {}: {} is a file, not a folder; '
                        'pass another {}'.format(folder, path, flag))
    if not os.access(path, os.W_OK | os.X_OK):
        what = ('create {} in'.format(folder) if path != folder
                else 'write into')
        raise UserError('cannot {} {} (permission denied); pass an {} in a '
                        'folder you may write to'.format(what, path, flag))


def make_folders(folder):
    """``os.makedirs(folder, exist_ok=True)``, returning the folders it
    created, deepest first (for :func:`remove_created`)."""
    created = []
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        created.append(path)
        path = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    return created


def remove_created(files=(), folders=()):
    """Remove files, then the folders, deepest first, that are empty then:
    what a failed run created."""
    for path in files:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except OSError:
            pass
    for path in sorted(folders, key=len, reverse=True):
        try:
            os.rmdir(path)
        except OSError:
            pass


def write_error(path, error):
    """The :class:`~pspnet.errors.UserError` for an ``OSError`` of
    :func:`write_atomic` (which leaves nothing behind)."""
    fix = ('free some space on its disk' if is_disk_full(error)
           else 'choose a folder you may write to')
    return UserError('could not write {} ({}); nothing was written; {}'
                     .format(path, error.strerror or error, fix))
