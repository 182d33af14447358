"""How much memory a prediction needs, from the network input size, and
refusing sizes that cannot fit before any work starts.

The figures are measured (``benchmarks/bench_memory.py``): the growth of a
process's peak resident memory while it segments one input-size image
(one window with its flip, 19 classes), fitted as ``a + b * S**2`` for an
input size S, per path and depth. They are for the CPU; on a GPU the same
plain-path estimate is compared with the GPU's memory.
"""

import os

from pspnet.errors import UserError
from pspnet.datasets.spec import MIN_INPUT_SIZE

#: ``(constant bytes, bytes per input pixel)`` of the peak growth during
#: one prediction, per path and depth: ``python
#: benchmarks/bench_memory.py`` on the development machine (x86-64, 2
#: cores, Chainer 7.8.1, numpy 1.23.5; sizes 97, 193, 289, 385, 481,
#: random weights, 19 classes), which measured (MB = 2**20 bytes)
#:
#: ====  ======  =====  =====  =====  =====  ======
#: path  depth    97     193    289    385    481
#: ====  ======  =====  =====  =====  =====  ======
#: fast  50, 101   84    105    162    232    285
#: plain 50       119    418    909   1601   2454
#: plain 101      119    418    931   1573   2368
#: ====  ======  =====  =====  =====  =====  ======
#:
#: The fit is within 7 % of every measurement (:data:`MARGIN` covers it),
#: and holds beyond the sizes fitted: fast R50 at 961 measured 922 MB (fit
#: 948), plain R50 at 713 5091 MB (fit 5376).
#: The fast path (:mod:`pspnet.inference`) holds its work buffers and the
#: folded weights, the same for both depths (the pyramid and the head
#: dominate); Chainer's plain path unfolds every convolution into an
#: im2col buffer: about ten times as much. Estimated at 713: 0.6 GB fast,
#: 5.4 GB plain.
#:
#: The ONNX export (``export``: :func:`pspnet.onnx_export.export`, with
#: ``check=True``, the larger) keeps every activation of the traced
#: forward pass, the graph (a copy of the weights) and its serialized
#: bytes; measured the same way (the peak growth over the model's
#: resident memory, random weights, 19 classes, same machine):
#: R50 at 97, 193, 289, 385, 577: 1132, 1364, 1741, 2453, 4621 MB;
#: R101 at 97, 193, 289, 385, 481: 1418, 1831, 2504, 3633, 5071 MB; the
#: fit (relative least squares) within 6 % of each.
#:
#: The INT8 export (``export-int8``) traces the same way, then ONNX
#: Runtime's calibration session holds more: the peak growth of the whole
#: export with three calibration windows, measured the same way (GB = 1e9
#: bytes): R50 at 193, 289, 385, 481, 713: 1.44, 1.83, 2.52, 3.47, 6.82;
#: R101: 1.93, 2.90, 4.07, 5.83, 11.8; the fit within 5 %, its constant
#: raised to the float32 export's (never the smaller estimate): within 8 %.
PEAK_GROWTH = {
    ('fast', 50): (81.1e6, 989.0),
    ('fast', 101): (81.1e6, 989.0),
    ('plain', 50): (27.3e6, 11047.0),
    ('plain', 101): (51.1e6, 10627.0),
    ('export', 50): (1041.4e6, 10662.0),
    ('export', 101): (1304.3e6, 16840.0),
    ('export-int8', 50): (1041.4e6, 10955.0),
    ('export-int8', 101): (1304.3e6, 20426.0),
}

#: What the paths of :data:`PEAK_GROWTH` are, for messages.
PATH_NAMES = {'fast': 'fast CPU path', 'plain': 'plain path',
              'export': 'ONNX export',
              'export-int8': 'INT8 export, calibration included'}

#: Factor on the fitted growth, for the scatter of the measurements.
MARGIN = 1.1

#: Resident memory of a process holding the model before it predicts
#: (Python, Chainer, numpy, OpenCV and the weights of 19 classes), bytes:
#: 371 MB and 516 MB measured.
MODEL_RESIDENT = {50: 389e6, 101: 541e6}

#: Part of the available memory a prediction may take (the rest for the
#: image, its scores and everything else on the machine).
USABLE_FRACTION = 0.9


def _path(fast, path):
    if path is None:
        return 'fast' if fast else 'plain'
    if path not in PATH_NAMES:
        raise ValueError('path must be one of {}, not {!r}'.format(
            ', '.join(sorted(PATH_NAMES)), path))
    return path


def estimate_bytes(depth, input_size, fast=True, path=None):
    """Peak memory of a process predicting (or exporting) at
    ``input_size``.

    Args:
        depth (int): 50 or 101.
        input_size (int): The network input size S (windows are S x S).
        fast (bool): The fast CPU path (else Chainer's plain path).
        path (str or None): ``'fast'``, ``'plain'``, ``'export'`` (the
            ONNX export) or ``'export-int8'`` (an INT8 export, its
            calibration included); None for the one ``fast`` says.

    Returns:
        float: Bytes: the model's resident memory and the prediction's
        buffers.
    """
    a, b = PEAK_GROWTH[_path(fast, path), depth]
    return MODEL_RESIDENT[depth] + MARGIN * (a + b * float(input_size) ** 2)


def available_bytes():
    """Memory the process may still take: ``MemAvailable`` of
    ``/proc/meminfo`` (free memory and reclaimable caches), else the free
    physical pages; None when neither is known."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):
        return None


def _gpu_bytes(gpu):
    try:
        import cupy
        return cupy.cuda.Device(gpu).mem_info[1]  # total
    except Exception:
        return None


def largest_input_size(depth, limit, fast=True, path=None):
    """The largest input size whose :func:`estimate_bytes` is within
    ``limit`` bytes (0 if none)."""
    a, b = PEAK_GROWTH[_path(fast, path), depth]
    room = (limit - MODEL_RESIDENT[depth]) / MARGIN - a
    return int((room / b) ** 0.5) if room > 0 and b > 0 else 0


def _format(n):
    for unit, size in (('TB', 1e12), ('GB', 1e9), ('MB', 1e6)):
        if n >= size:
            return '{:.1f} {}'.format(n / size, unit)
    return '{:.0f} kB'.format(n / 1e3)


def check_input_size(depth, input_size, gpu=-1, fast=True, path=None):
    """Refuse an input size whose buffers cannot fit, before the model is
    built.

    On the CPU the estimate is compared with :data:`USABLE_FRACTION` of
    :func:`available_bytes` plus what the process already holds; on a GPU
    the plain path's estimate with the GPU's memory.

    Args:
        depth, input_size, fast, path: As :func:`estimate_bytes` (the
            export paths run on the CPU; ``gpu`` is ignored then).
        gpu (int): The GPU of the prediction, negative for the CPU.

    Raises:
        UserError: One line with the estimate, the memory there is and the
        largest input size that fits.
    """
    path = _path(fast, path)
    if gpu >= 0 and not path.startswith('export'):
        limit = _gpu_bytes(gpu)
        path, where = 'plain', 'GPU {}'.format(gpu)
    else:
        limit = available_bytes()
        where = 'this machine'
        if limit is not None:
            limit = limit * USABLE_FRACTION + _resident_bytes()
    if limit is None:
        return
    need = estimate_bytes(depth, input_size, path=path)
    if need <= limit:
        return
    largest = largest_input_size(depth, limit, path=path)
    raise UserError(
        '--input-size {} needs about {} of memory for ResNet{} ({}), more '
        'than the {} {} has; {}'.format(
            input_size, _format(need), depth, PATH_NAMES[path],
            _format(limit), where,
            'use at most --input-size {} (the presets use 713 and 473)'
            .format(largest) if largest >= MIN_INPUT_SIZE else
            'not even the smallest, {}, fits: close other programs or use '
            'a machine with more memory'.format(MIN_INPUT_SIZE)))


def image_bytes(shape, n_class, scales=None):
    """Memory for the arrays of one image beyond the network's buffers
    (computed from the arrays :mod:`pspnet.prediction` makes, not
    measured): at each scale s, the mean-subtracted image and its
    resized copy (3 x 4 bytes each), the summed scores and their average
    (``n_class`` x 4 bytes each) at s**2 times the pixels; at the image's
    own size, the scores resized back and their sum over scales
    (``n_class`` x 4 bytes each), the float32 image and the int32 labels.

    Args:
        shape (tuple of ints): (H, W) of the image.
        n_class (int): Number of classes.
        scales (sequence of floats or None): As ``PSPNet.scales``.

    Returns:
        float: Bytes.
    """
    pixels = float(shape[0]) * float(shape[1])
    largest = max(scales) if scales else 1.0
    scaled = pixels * largest ** 2 * (2 * 3 * 4 + 2 * n_class * 4)
    return scaled + pixels * (2 * n_class * 4 + 3 * 4 + 4)


def check_image(name, shape, n_class, scales=None, gpu=-1):
    """Refuse an image whose score arrays cannot fit in the memory
    available (on the CPU; the scores of a GPU model live on the GPU,
    compared with its memory).

    Raises:
        UserError: One line naming the image, the estimate and the memory.
    """
    limit = _gpu_bytes(gpu) if gpu >= 0 else available_bytes()
    if limit is None:
        return
    limit *= USABLE_FRACTION
    need = image_bytes(shape, n_class, scales)
    if need <= limit:
        return
    raise UserError(
        'image {} ({}x{}) needs about {} of memory for the scores of its {} '
        'classes{}, more than the {} available; shrink it, or split it into '
        'parts'.format(name, shape[1], shape[0], _format(need), n_class,
                       ' at scale {:g}'.format(max(scales)) if scales
                       else '', _format(limit)))


def _resident_bytes():
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
