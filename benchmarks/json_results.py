"""The JSON file a benchmark writes its results to (``--json``)."""

import os


def write_json(path, results):
    """Write ``results`` as JSON to ``path`` atomically
    (:func:`pspnet.atomic.save_json_atomic`), making its folder, and say
    so.

    pspnet is imported here, not at the top, so that a benchmark can set
    its environment (OpenBLAS's variables) before numpy is first loaded.
    """
    from pspnet.atomic import save_json_atomic
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_json_atomic(path, results)
    print('wrote', path)
