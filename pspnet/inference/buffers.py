"""A pool of float32 buffers that one forward pass recycles.

Fresh arrays of tens of megabytes cost page faults when first written (the
kernel zeroes every page); a forward pass of PSPNetResNet101 at 713 would
fault in about a gigabyte. Handing buffers back once a layer is done with
them bounds that to the pass's peak of live arrays.
"""

import numpy as np


class BufferPool(object):
    """Float32 arrays carved from recycled one-dimensional buffers.

    An array given back must not be used afterwards, nor any view of it.
    """

    def __init__(self):
        self._free = []
        self._taken = set()
        #: Buffers allocated so far (a steady state of identical calls
        #: allocates none).
        self.allocations = 0

    def take(self, shape):
        """An uninitialized C-contiguous float32 array of ``shape``, from
        the smallest free buffer that holds it, else newly allocated (and
        the free buffers smaller than it dropped)."""
        size = int(np.prod(shape))
        fits = [i for i, buf in enumerate(self._free) if buf.size >= size]
        if fits:
            buf = self._free.pop(min(fits, key=lambda i: self._free[i].size))
        else:
            # The free buffers too small for this one are dropped: they
            # are left from earlier, smaller layers, and kept they would
            # add up beside the bigger buffers of later ones (for
            # PSPNetResNet101 at 713, 390 MB of buffers kept instead of
            # 307 MB, the time the same; a repeated call allocates
            # nothing either way).
            self._free = [b for b in self._free if b.size >= size]
            buf = np.empty(size, dtype=np.float32)
            self.allocations += 1
        self._taken.add(buf.ctypes.data)
        return buf[:size].reshape(shape)

    def give(self, *arrays):
        """Hand back arrays from :meth:`take`, or float32 arrays whose
        memory the caller owns entirely; None is ignored."""
        for array in arrays:
            if array is None:
                continue
            owner = array if array.base is None else array.base
            flat = owner.reshape(-1)
            if flat.dtype != np.float32 or flat.base is not owner and \
                    flat is not owner:
                raise ValueError('not a pooled float32 buffer')
            if all(flat.ctypes.data != buf.ctypes.data for buf in self._free):
                self._free.append(flat)

    def trim(self):
        """Drop the free buffers that no :meth:`take` used since the last
        trim, so that a pool kept between calls holds no more than a call
        needs."""
        self._free = [buf for buf in self._free
                      if buf.ctypes.data in self._taken]
        self._taken = set()
