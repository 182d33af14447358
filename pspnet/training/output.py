"""The output folder (``--out``) of a training run.

One folder holds one run: a fresh run is refused in a folder that holds
another run's configuration, snapshots or final model (continue that run
with ``--resume``, or choose another ``--out``), and a lock
(``fcntl.flock`` on ``OUT/.lock``) keeps two running jobs out of the same
folder. A run that fails before its first snapshot removes what it
created (its files, and the folder when it made it), so the same command
can simply be run again; once a snapshot exists, everything stays for
``--resume``.
"""

import errno
import fcntl
import os
import re
import socket

from pspnet import atomic
from pspnet.errors import UserError

#: The file locked while a run uses the folder.
LOCK_FILE = '.lock'
CONFIG_FILE = 'config.json'
FINAL_MODEL_FILE = 'model_final.npz'
#: The weights of the best validation mIoU so far.
BEST_MODEL_FILE = 'model_best.npz'
#: Of which iteration and mIoU the best model is.
BEST_RECORD_FILE = 'model_best.json'
_SNAPSHOT = re.compile(r'^snapshot_iter_\d+\.npz$')
#: Files a run writes (removed again when it fails before a snapshot).
RUN_FILES = (CONFIG_FILE, 'log', 'loss.png', 'lr.png', 'validation.png',
             'replica_check.json', 'validation.json', FINAL_MODEL_FILE,
             BEST_MODEL_FILE, BEST_RECORD_FILE)


def run_files(path):
    """The names in folder ``path`` that belong to a training run, sorted
    (config, snapshots, final model)."""
    try:
        names = os.listdir(path)
    except OSError:
        return []
    return sorted(name for name in names if name in (
        CONFIG_FILE, FINAL_MODEL_FILE) or _SNAPSHOT.match(name))


def _snapshots(path):
    return [name for name in run_files(path) if _SNAPSHOT.match(name)]


class OutputFolder(object):
    """``--out`` of one run, used by rank 0 only.

    Args:
        path (str): The folder.
    """

    def __init__(self, path):
        self.path = path
        self._created = []
        self._lock_fd = None
        # Files this run may remove when it fails (a fresh run's own).
        self._own_files = ()

    def check_writable(self):
        """Refuse an ``--out`` that is a file, or a folder (or the first
        existing parent of a new one) that cannot be written to; creates
        nothing."""
        path = self.path
        if os.path.exists(path) and not os.path.isdir(path):
            raise UserError('--out {} is a file, not a folder; give a new '
                            'folder or the folder of the run to resume'
                            .format(path))
        existing = os.path.abspath(path)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise UserError('--out {}: {} is a file, not a folder; give '
                            'another --out'.format(path, existing))
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UserError('cannot write into {} (no permission, or a '
                            'read-only file system) for --out {}; choose a '
                            'folder you may write to'.format(existing, path))

    def open(self, fresh):
        """Create (when needed) and lock the folder for this run.

        Args:
            fresh (bool): A new run (not ``--resume``): the folder must
                hold no other run.

        Raises:
            UserError: Unwritable, used by a running job, or (``fresh``)
            holding another run. Nothing is left created then.
        """
        self.check_writable()
        try:
            # Deepest first.
            self._created = atomic.make_folders(self.path)
        except OSError as e:
            raise UserError('cannot create --out {} ({}); choose a folder '
                            'you may write to'.format(self.path,
                                                      e.strerror or e))
        try:
            self._lock()
            if fresh:
                self._check_no_other_run()
        except BaseException:
            self.discard()
            raise
        if fresh:
            before = set(os.listdir(self.path))
            self._own_files = tuple(n for n in RUN_FILES if n not in before)

    def _lock(self):
        lock_path = os.path.join(self.path, LOCK_FILE)
        while True:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise UserError('cannot create {} ({}); choose an --out you '
                                'may write to'.format(lock_path,
                                                      e.strerror or e))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.read(fd, 200).decode('utf-8', 'replace').strip()
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise UserError(
                    'another training run{} is using --out {}; wait for it '
                    'to end, or choose another --out'.format(
                        ' (' + holder + ')' if holder else '', self.path))
            # The holder before us may have removed the file after we
            # opened it: only a lock on the file now at the path counts.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, 'process {} on {}\n'.format(
            os.getpid(), socket.gethostname()).encode('utf-8'))
        self._lock_fd = fd

    def _check_no_other_run(self):
        found = run_files(self.path)
        if not found:
            return
        shown = ', '.join(found[:3]) + (', ...' if len(found) > 3 else '')
        if _snapshots(self.path):
            raise UserError(
                '--out {} holds another training run ({}); continue it with '
                '--resume, or start this run with another --out'.format(
                    self.path, shown))
        raise UserError(
            '--out {} holds another training run ({}) without a snapshot to '
            'resume from; delete those files, or start this run with another '
            '--out'.format(self.path, shown))

    def close(self):
        """Release the lock (the run ended); the files stay."""
        if self._lock_fd is None:
            return
        try:
            os.remove(os.path.join(self.path, LOCK_FILE))
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None

    def discard(self):
        """The run failed: release the lock and, unless a snapshot exists
        to resume from, remove what this run created: its files (a fresh
        run's only; a resumed run's folder stays as it is), temporaries
        left by its writers, and the folders it made, when empty."""
        self.close()
        if _snapshots(self.path):
            return
        for name in self._own_files:
            try:
                os.remove(os.path.join(self.path, name))
            except OSError:
                pass
        if self._own_files:
            atomic.remove_stale_temporaries(self.path)
        for folder in self._created:
            try:
                os.rmdir(folder)
            except OSError:
                break
