"""Colours and names for classes that have none of their own.

A dataset's own palette (Cityscapes, ADE20K, VOC, a description's
``colors``) lives with the dataset; these are the colours and names of
classes without them (weights of an unknown class count, a description
without ``colors``).
"""

import numpy as np

#: Colour of pixels labelled -1, RGB.
IGNORE_COLOR = (0, 0, 0)


def generate_label_colors(n_class):
    """Distinct colours for any number of classes.

    Class ``i`` gets the colour whose bits interleave those of ``i + 1``
    (the scheme of the PASCAL VOC palette, shifted by one so that no class
    is black like the ignored pixels).

    Args:
        n_class (int): Number of classes.

    Returns:
        numpy.ndarray: (n_class, 3) uint8 RGB colours, all different (for up
        to 2 ** 24 - 1 classes).
    """
    ids = np.arange(1, n_class + 1, dtype=np.int64)
    colors = np.zeros((n_class, 3), dtype=np.int64)
    bit = 7
    while ids.any():
        for channel in range(3):
            colors[:, channel] |= ((ids >> channel) & 1) << bit
        ids >>= 3
        bit -= 1
        if bit < 0:  # more than 2 ** 24 classes: wrap around
            bit = 7
    return colors.astype(np.uint8)


def generate_label_names(n_class):
    """Names ``'class 0'``, ``'class 1'``, ... for classes without names."""
    return tuple('class {}'.format(i) for i in range(n_class))
