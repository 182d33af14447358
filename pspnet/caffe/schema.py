"""Protobuf message classes of Caffe's model format, built from the kept
``caffe.proto`` at import time (no protoc, no generated code).

:func:`messages` returns the classes in one of three flavours that differ
only in how ``BlobProto.data`` (field 5, the parameter values) is declared:

* ``'float'``: as in Caffe, ``repeated float data = 5 [packed = true]``.
  Reading it gives Python floats, one object per value (slow for 65 million
  values, fine for checks).
* ``'raw'``: ``repeated bytes data = 5``. A packed repeated float field is
  written as one length-delimited record of little-endian float32 values,
  the wire form of ``bytes``, so each element is the raw buffer of one
  packed record, ready for ``numpy.frombuffer``. Values written one by one
  (Caffe files never do this, but protobuf allows it) do not fit ``bytes``
  and end up in the unknown fields; :mod:`pspnet.caffe.reader` then reparses
  that blob with the ``'float'`` flavour.
* ``'unpacked'``: ``repeated float data = 5 [packed = false]``, the old
  one-value-per-record form, for tests.
"""

import functools
import os
import re

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory

PROTO_PATH = os.path.join(os.path.dirname(__file__), 'caffe.proto')

FLAVOURS = ('float', 'raw', 'unpacked')

_F = descriptor_pb2.FieldDescriptorProto
_SCALAR_TYPES = {
    'double': _F.TYPE_DOUBLE, 'float': _F.TYPE_FLOAT,
    'int32': _F.TYPE_INT32, 'int64': _F.TYPE_INT64,
    'uint32': _F.TYPE_UINT32, 'uint64': _F.TYPE_UINT64,
    'sint32': _F.TYPE_SINT32, 'sint64': _F.TYPE_SINT64,
    'fixed32': _F.TYPE_FIXED32, 'fixed64': _F.TYPE_FIXED64,
    'sfixed32': _F.TYPE_SFIXED32, 'sfixed64': _F.TYPE_SFIXED64,
    'bool': _F.TYPE_BOOL, 'string': _F.TYPE_STRING, 'bytes': _F.TYPE_BYTES,
}
_LABELS = {'optional': _F.LABEL_OPTIONAL, 'repeated': _F.LABEL_REPEATED,
           'required': _F.LABEL_REQUIRED}
_TOKENS = re.compile(r'\s*(?:"([^"\\]*)"|([A-Za-z_][\w.]*)|(-?[\d.][\w.+-]*)'
                     r'|([{}=;\[\],]))')


class ProtoSyntaxError(ValueError):
    """The kept caffe.proto uses something this reader does not support."""


class _Word(str):
    """A token that is not a quoted string."""


def _tokenize(text):
    text = re.sub(r'//[^\n]*', '', text)
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKENS.match(text, pos)
        if match is None or match.end() == pos:
            raise ProtoSyntaxError('unexpected text at {!r}'.format(
                text[pos:pos + 30]))
        string, word, number, symbol = match.groups()
        tokens.append(string if string is not None
                      else _Word(word or number or symbol))
        pos = match.end()
    return tokens


class _Parser(object):

    def __init__(self, tokens):
        self.tokens = tokens
        self.pos = 0

    def next(self):
        if self.pos >= len(self.tokens):
            raise ProtoSyntaxError('unexpected end of file')
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def word(self):
        return str(self.next())

    def expect(self, *words):
        for word in words:
            found = self.word()
            if found != word:
                raise ProtoSyntaxError('expected {!r}, found {!r}'.format(
                    word, found))

    def peek(self):
        if self.pos < len(self.tokens) and isinstance(self.tokens[self.pos],
                                                      _Word):
            return str(self.tokens[self.pos])
        return None if self.pos >= len(self.tokens) else ''


def _parse_enum(parser, enum):
    enum.name = parser.word()
    parser.expect('{')
    while parser.peek() != '}':
        value = enum.value.add(name=parser.word())
        parser.expect('=')
        value.number = int(parser.word())
        parser.expect(';')
    parser.expect('}')


def _parse_field(parser, label, message, field_types):
    field = message.field.add(label=_LABELS[label])
    type_name = parser.word()
    field.name = parser.word()
    parser.expect('=')
    field.number = int(parser.word())
    field_types.append((field, type_name))
    if parser.peek() == '[':
        parser.next()
        while True:
            option = parser.word()
            parser.expect('=')
            value = parser.word()
            if option == 'packed':
                field.options.packed = value == 'true'
            elif option == 'default':
                field.default_value = value
            else:
                raise ProtoSyntaxError('unsupported option {!r}'.format(
                    option))
            if parser.peek() != ',':
                break
            parser.next()
        parser.expect(']')
    parser.expect(';')


def parse_proto(text, file_name='caffe.proto'):
    """Build a ``FileDescriptorProto`` from proto2 text of the supported
    subset (messages with optional/repeated fields, nested enums, the
    options packed and default).

    Raises:
        ProtoSyntaxError: Anything outside that subset.
    """
    parser = _Parser(_tokenize(text))
    proto = descriptor_pb2.FileDescriptorProto(name=file_name,
                                               syntax='proto2')
    field_types = []
    while parser.peek() is not None:
        keyword = parser.word()
        if keyword == 'syntax':
            parser.expect('=')
            if parser.word() != 'proto2':
                raise ProtoSyntaxError('only proto2 is supported')
            parser.expect(';')
        elif keyword == 'package':
            proto.package = parser.word()
            parser.expect(';')
        elif keyword == 'message':
            message = proto.message_type.add(name=parser.word())
            parser.expect('{')
            while parser.peek() != '}':
                keyword = parser.word()
                if keyword == 'enum':
                    _parse_enum(parser, message.enum_type.add())
                elif keyword in _LABELS:
                    _parse_field(parser, keyword, message, field_types)
                else:
                    raise ProtoSyntaxError('unsupported {!r} in message {}'
                                           .format(keyword, message.name))
            parser.expect('}')
        else:
            raise ProtoSyntaxError('unsupported {!r}'.format(keyword))

    prefix = '.{}.'.format(proto.package) if proto.package else '.'
    messages = {m.name: m for m in proto.message_type}
    for field, type_name in field_types:
        owner = next(m for m in proto.message_type if field in m.field)
        enums = {e.name for e in owner.enum_type}
        if type_name in _SCALAR_TYPES:
            field.type = _SCALAR_TYPES[type_name]
        elif type_name in enums:
            field.type = _F.TYPE_ENUM
            field.type_name = prefix + owner.name + '.' + type_name
        elif type_name in messages:
            field.type = _F.TYPE_MESSAGE
            field.type_name = prefix + type_name
        else:
            raise ProtoSyntaxError('unknown type {!r} of {}.{}'.format(
                type_name, owner.name, field.name))
    return proto


@functools.lru_cache(maxsize=None)
def file_descriptor_proto(flavour='float'):
    """The kept schema as a ``FileDescriptorProto``, in one of
    :data:`FLAVOURS` (see the module docstring)."""
    if flavour not in FLAVOURS:
        raise ValueError('flavour must be one of {}'.format(FLAVOURS))
    with open(PROTO_PATH) as f:
        proto = parse_proto(f.read())
    blob = next(m for m in proto.message_type if m.name == 'BlobProto')
    data = next(f for f in blob.field if f.name == 'data')
    if flavour == 'raw':
        data.type = _F.TYPE_BYTES
        data.ClearField('options')
    elif flavour == 'unpacked':
        data.options.packed = False
    return proto


class Messages(object):
    """The message classes of one flavour, as attributes named like the
    messages (``NetParameter``, ``LayerParameter``, ``BlobProto``...)."""

    def __init__(self, flavour):
        proto = file_descriptor_proto(flavour)
        pool = descriptor_pool.DescriptorPool()
        pool.AddSerializedFile(proto.SerializeToString())
        self.flavour = flavour
        for message in proto.message_type:
            descriptor = pool.FindMessageTypeByName(
                '{}.{}'.format(proto.package, message.name))
            setattr(self, message.name,
                    message_factory.GetMessageClass(descriptor))


@functools.lru_cache(maxsize=None)
def messages(flavour='raw'):
    """The message classes of a flavour (cached; see :class:`Messages`)."""
    return Messages(flavour)
