"""What a folder holds, for tests that compare folders before and after a
run."""

import os


def read_bytes(path):
    """The bytes of the file ``path``."""
    with open(path, 'rb') as f:
        return f.read()


def folder_tree(folder):
    """Every path under ``folder``, relative to it: folders map to None,
    files to their bytes."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), folder)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, folder)] = read_bytes(path)
    return found
