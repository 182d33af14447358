"""Atomic file writes: a crash leaves the old complete file or the new
one, never a half-written one.

Data goes to a temporary file next to the target (named with
:data:`TEMP_PREFIX`), which is flushed, synced to disk and renamed over
the target; the folder is synced after the rename.
"""

import json
import os
import tempfile

import chainer

#: Start of the names of temporary files (what a killed writer leaves).
TEMP_PREFIX = '.tmp-'


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
    durably, with the usual permissions (umask applied)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(
        prefix=TEMP_PREFIX + os.path.basename(path) + '.', dir=folder)
    try:
        # mkstemp makes the file private; give it the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    _fsync_dir(folder)


def save_npz_atomic(path, obj, compression=True):
    """``chainer.serializers.save_npz`` through :func:`write_atomic`."""
    write_atomic(path, lambda f: chainer.serializers.save_npz(
        f, obj, compression))


def save_json_atomic(path, obj):
    """Write ``obj`` as indented JSON through :func:`write_atomic`."""
    text = json.dumps(obj, indent=2, sort_keys=True) + '\n'
    write_atomic(path, lambda f: f.write(text.encode('utf-8')))
