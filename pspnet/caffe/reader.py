"""Reading a caffemodel (a binary ``caffe.NetParameter``) one layer at a
time.

A full PSPNet caffemodel holds about 65 million float32 values (263 MB for
ResNet101). Parsing the whole ``NetParameter`` at once keeps a second copy
of the file in protobuf's memory; reading the layers one by one keeps at
most one layer twice. :func:`index_layers` walks the top-level records of
the file (the only hand-read part of the format: a tag and a length before
each layer) and parses each layer with protobuf through the schema of
:mod:`pspnet.caffe.schema`; :func:`read_layer` reads one layer again later,
and :func:`blob_array` turns a blob into a numpy array without a Python
loop over its values.
"""

import collections
import os

import numpy as np
from google.protobuf.message import DecodeError

from pspnet.caffe import schema
from pspnet.errors import UserError

# Top-level field numbers of caffe.NetParameter (see caffe.proto).
_LAYER_FIELD = 100
_V1_LAYERS_FIELD = 2
_WIRE_VARINT, _WIRE_64BIT, _WIRE_DELIMITED, _WIRE_32BIT = 0, 1, 2, 5

LayerRecord = collections.namedtuple(
    'LayerRecord', ['name', 'type', 'offset', 'size', 'blob_shapes',
                    'bias_term', 'pool_kernel', 'interp_size'])
LayerRecord.__doc__ = """What :func:`index_layers` learns of one layer.

    name (str), type (str): The layer's name and type string.
    offset, size (int): Where the layer's bytes lie in the file.
    blob_shapes (tuple of tuples): Shape of each parameter blob.
    bias_term (bool or None): ``convolution_param.bias_term``, None when the
        layer has no convolution_param.
    pool_kernel (tuple or None): (kh, kw) of a pooling layer's window.
    interp_size (tuple or None): (h, w) of an Interp layer's output size.
"""


class _TopLevelReader(object):
    """Walks the top-level fields of a binary protobuf message in a file."""

    def __init__(self, f, path, file_size):
        self.f = f
        self.path = path
        self.file_size = file_size
        self.n_records = 0

    def _corrupt(self, offset, problem):
        return UserError(
            '{} is not a Caffe model or is corrupt ({} at byte {}); pass a '
            'caffemodel of PSPNet, downloaded again if need be'.format(
                self.path, problem, offset))

    def _truncated(self, offset, needed):
        if not self.n_records:
            return self._corrupt(offset, 'a record of {} bytes in a file of '
                                 '{}'.format(needed, self.file_size))
        return UserError(
            '{} is truncated: the record at byte {} needs {} bytes but only '
            '{} remain; download it again'.format(
                self.path, offset, needed, max(0, self.file_size - offset)))

    def _varint(self):
        start = self.f.tell()
        value = shift = 0
        while True:
            byte = self.f.read(1)
            if not byte:
                raise self._truncated(start, 1)
            value |= (byte[0] & 0x7f) << shift
            if not byte[0] & 0x80:
                return value
            shift += 7
            if shift >= 64:
                raise self._corrupt(start, 'a number longer than 10 bytes')

    def records(self):
        """Yield ``(field_number, offset, size)`` of every length-delimited
        top-level field, skipping the others."""
        while True:
            start = self.f.tell()
            if start >= self.file_size:
                return
            key = self._varint()
            field, wire_type = key >> 3, key & 7
            if field == 0:
                raise self._corrupt(start, 'field number 0')
            if wire_type == _WIRE_VARINT:
                self._varint()
                continue
            fixed = {_WIRE_64BIT: 8, _WIRE_32BIT: 4}.get(wire_type)
            if fixed is None and wire_type != _WIRE_DELIMITED:
                raise self._corrupt(start, 'wire type {}'.format(wire_type))
            size = fixed or self._varint()
            offset = self.f.tell()
            if offset + size > self.file_size:
                raise self._truncated(offset, size)
            if fixed is None:
                self.n_records += 1
                yield field, offset, size
            self.f.seek(offset + size)


def _open(path):
    if os.path.isdir(path):
        raise UserError('{} is a folder, not a caffemodel; pass the path of '
                        'a PSPNet .caffemodel file'.format(path))
    if not os.path.isfile(path):
        raise UserError('caffemodel {} does not exist; pass the path of a '
                        'PSPNet .caffemodel file'.format(path))
    try:
        return open(path, 'rb')
    except OSError as e:
        raise UserError('cannot read {} ({}); check the path and its '
                        'permissions'.format(path, e.strerror or e))


def _parse_layer(data, path, offset):
    try:
        return schema.messages('raw').LayerParameter.FromString(data)
    except DecodeError as e:
        raise UserError(
            '{} is not a Caffe model or is corrupt (the layer at byte {} '
            'does not parse: {}); pass a caffemodel of PSPNet, downloaded '
            'again if need be'.format(path, offset, e))


def blob_shape(blob):
    """The shape of a ``BlobProto``: its ``shape`` field, else the legacy
    (num, channels, height, width), as Caffe itself reads it."""
    if any(blob.HasField(dim)
           for dim in ('num', 'channels', 'height', 'width')):
        return (blob.num, blob.channels, blob.height, blob.width)
    return tuple(int(d) for d in blob.shape.dim)


def blob_array(blob):
    """The values of a ``BlobProto`` of the ``'raw'`` flavour.

    Returns:
        numpy.ndarray: float32 of :func:`blob_shape`, a read-only view of the
        parsed bytes where the values were packed (as Caffe writes them).

    Raises:
        ValueError: The blob holds another number of values than its shape
        says.
    """
    shape = blob_shape(blob)
    count = int(np.prod(shape, dtype=np.int64))
    chunks = blob.data
    data = chunks[0] if len(chunks) == 1 else b''.join(chunks)
    if len(data) != 4 * count:
        # Values written one per record (or no values at all): reparse the
        # blob with the schema that reads floats one by one.
        floats = schema.messages('float').BlobProto.FromString(
            blob.SerializeToString()).data
        if len(floats) != count:
            raise ValueError('holds {} values, its shape {} needs {}'.format(
                len(floats), shape, count))
        return np.array(floats, dtype=np.float32).reshape(shape)
    return np.frombuffer(data, dtype='<f4').astype(
        np.float32, copy=False).reshape(shape)


def _record(layer, offset, size):
    bias_term = layer.convolution_param.bias_term \
        if layer.HasField('convolution_param') else None
    pool_kernel = interp_size = None
    if layer.HasField('pooling_param'):
        param = layer.pooling_param
        if param.HasField('kernel_h') or param.HasField('kernel_w'):
            pool_kernel = (param.kernel_h, param.kernel_w)
        elif param.HasField('kernel_size'):
            pool_kernel = (param.kernel_size, param.kernel_size)
    if layer.HasField('interp_param') and layer.interp_param.height:
        interp_size = (layer.interp_param.height, layer.interp_param.width)
    return LayerRecord(layer.name, layer.type, offset, size,
                       tuple(blob_shape(b) for b in layer.blobs), bias_term,
                       pool_kernel, interp_size)


def index_layers(path):
    """Read what every layer of a caffemodel is, without keeping its values.

    Returns:
        list of LayerRecord: The layers in file order.

    Raises:
        UserError: The file is missing, truncated, not a protobuf message,
        or written in Caffe's old V1 layer format.
    """
    records = []
    with _open(path) as f:
        file_size = os.fstat(f.fileno()).st_size
        if file_size == 0:
            raise UserError('{} is empty; download the caffemodel '
                            'again'.format(path))
        for field, offset, size in _TopLevelReader(
                f, path, file_size).records():
            if field == _V1_LAYERS_FIELD:
                raise UserError(
                    '{} uses Caffe\'s old V1 layer format, which PSPNet\'s '
                    'models never used (it has no BN layer); pass one of '
                    'PSPNet\'s caffemodels'.format(path))
            if field != _LAYER_FIELD:
                continue
            layer = _parse_layer(f.read(size), path, offset)
            records.append(_record(layer, offset, size))
            del layer
    return records


def read_layer(f, record, path):
    """Parse one layer again from an open caffemodel.

    Args:
        f: The caffemodel opened in binary mode.
        record (LayerRecord): Where the layer is, from :func:`index_layers`.
        path (str): The file's path, for error messages.

    Returns:
        ``LayerParameter`` of the ``'raw'`` flavour.
    """
    f.seek(record.offset)
    data = f.read(record.size)
    if len(data) != record.size:
        raise UserError('{} changed while it was read; convert it again'
                        .format(path))
    return _parse_layer(data, path, record.offset)
