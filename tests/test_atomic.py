"""Atomic writes: complete files or none, no litter, even after kill -9."""

import errno
import os
import subprocess
import sys

import chainer
import numpy as np
import pytest

from pspnet import atomic


def dead_pid():
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    process.wait()
    return process.pid


def temp_name(name, pid, host=None):
    return '{}{}.{}.{}-abc123'.format(
        atomic.TEMP_PREFIX, name, host or atomic._temp_prefix('x').split(
            '.')[2], pid)


def test_next_write_removes_what_killed_writers_left(tmp_path):
    folder = str(tmp_path)
    stale = temp_name('model.npz', dead_pid())
    alive = temp_name('model.npz', os.getppid())        # still running
    elsewhere = temp_name('model.npz', dead_pid(), host='otherhost')
    other_file = temp_name('other.npz', dead_pid())
    for name in (stale, alive, elsewhere, other_file):
        open(os.path.join(folder, name), 'wb').close()
    atomic.save_json_atomic(os.path.join(folder, 'model.npz'), {'a': 1})
    assert sorted(os.listdir(folder)) == sorted(
        ['model.npz', alive, elsewhere, other_file])
    assert atomic.remove_stale_temporaries(folder) == [
        os.path.join(folder, other_file)]


def test_a_killed_writer_leaves_a_file_the_next_run_removes(tmp_path):
    target = str(tmp_path / 'big.npz')
    code = ('import os, signal, sys; sys.path.insert(0, {root!r}); '
            'from pspnet import atomic\n'
            'def write(f):\n'
            '    f.write(b"x" * 1000); f.flush()\n'
            '    os.kill(os.getpid(), signal.SIGKILL)\n'
            'atomic.write_atomic({target!r}, write)\n').format(
                root=os.path.dirname(os.path.dirname(__file__)),
                target=target)
    result = subprocess.run([sys.executable, '-c', code])
    assert result.returncode == -9
    left = os.listdir(str(tmp_path))
    assert len(left) == 1 and left[0].startswith(atomic.TEMP_PREFIX)
    atomic.write_atomic(target, lambda f: f.write(b'done'))
    assert os.listdir(str(tmp_path)) == ['big.npz']


class _FullDisk(object):
    """A file object that fails like a full disk after ``room`` bytes."""

    def __init__(self, room):
        self.room = room
        self.written = 0

    def write(self, data):
        if self.written + len(data) > self.room:
            raise OSError(errno.ENOSPC, 'No space left on device')
        self.written += len(data)
        return len(data)

    def tell(self):
        return self.written

    def flush(self):
        pass


@pytest.mark.parametrize('room', [0, 100, 5000, 20000])
def test_npz_on_a_full_disk_fails_once_and_cleanly(room):
    link = chainer.links.Linear(100, 50)   # about 20 kB
    with pytest.raises(OSError) as info:
        atomic.write_npz(_FullDisk(room), link, compression=False)
    assert atomic.is_disk_full(info.value)


FULL_DISK_SCRIPT = """
import gc, os, resource, signal, sys
sys.path.insert(0, {root!r})
import chainer
from pspnet import atomic
# A file size limit fails writes as a full disk does (EFBIG).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
try:
    atomic.save_npz_atomic({target!r}, chainer.links.Linear(100, 50), False)
except OSError as e:
    assert atomic.is_disk_full(e), e
    print('full')
gc.collect()
"""


def test_full_disk_leaves_nothing_and_prints_nothing(tmp_path):
    # numpy.savez leaves its archive open when a write fails; its
    # destructor then fails again and prints "Exception ignored ...".
    code = FULL_DISK_SCRIPT.format(
        root=os.path.dirname(os.path.dirname(__file__)),
        target=str(tmp_path / 'x.npz'))
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'full\n'
    assert result.stderr == ''
    assert os.listdir(str(tmp_path)) == []


def test_npz_writer_matches_chainers(tmp_path):
    link = chainer.Sequential(chainer.links.Linear(3, 4),
                              chainer.links.BatchNormalization(4))
    ours, theirs = str(tmp_path / 'ours.npz'), str(tmp_path / 'theirs.npz')
    for compression in (False, True):
        atomic.save_npz_atomic(ours, link, compression)
        chainer.serializers.save_npz(theirs, link, compression)
        with np.load(ours) as a, np.load(theirs) as b:
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])
                assert a[key].dtype == b[key].dtype
