"""Synthetic caffemodels in the layout of PSPNet's released models.

The layers follow PSPNet's prototxts (hszhao/PSPNet,
evaluation/prototxt/pspnet{50_ADE20K_473,101_VOC2012_473,
101_cityscapes_713}.prototxt) in names, order, types, blob shapes and
layer parameters, plus what a model saved from a training net holds: a data
layer, Split layers, the auxiliary classifier (``conv4_{n+1}``,
``conv4_{n+1}/bn``, ``conv6_1``), loss layers, and no ``conv6_interp``.
Values are random but reproducible: :func:`blob_values` gives any blob
again without keeping the file's 190 to 270 MB in memory.

Files are written one layer at a time, each as a one-layer
``NetParameter`` (concatenated protobuf messages merge, so the file is one
``NetParameter``), by protobuf itself through the kept schema.
"""

import collections
import zlib

import numpy as np
from google.protobuf import text_format

from pspnet.caffe import schema

UNITS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
STAGE_CHANNELS = {2: (64, 256), 3: (128, 512), 4: (256, 1024),
                  5: (512, 2048)}
#: Dilation of the 3x3 convolutions of each stage.
STAGE_DILATION = {2: 1, 3: 1, 4: 2, 5: 4}
PYRAMID_BINS_IN_FILE_ORDER = (1, 2, 3, 6)

#: Type strings of the released caffemodels and of PSPNet's prototxts.
TYPE_STYLES = {
    'released': {'conv': 'ConvolutionData', 'hole': 'HoleConvolutionData',
                 'bn': 'BNData'},
    'prototxt': {'conv': 'Convolution', 'hole': 'HoleConvolution',
                 'bn': 'BN'},
}

Layer = collections.namedtuple('Layer', [
    'name', 'type', 'bottom', 'top', 'blob_shapes', 'conv', 'pool',
    'interp'])
Layer.__doc__ = """One layer of a synthetic caffemodel.

    conv: dict of convolution_param fields, or None.
    pool: dict of pooling_param fields, or None.
    interp: dict of interp_param fields, or None.
"""


def feature_size(input_size):
    """Side of the stride-8 feature map PSPNet computes (473 -> 60)."""
    return (input_size - 1) // 8 + 1


def pspnet_layers(n_layer=50, n_class=150, input_size=473, aux=True,
                  training_extras=True, type_style='released'):
    """The layers of a PSPNet caffemodel, in file order.

    Args:
        n_layer (int): 50 or 101.
        n_class (int): Classes of the classifier ``conv6``.
        input_size (int): Input side; fixes the pyramid's pooling windows.
        aux (bool): Include the auxiliary classifier of training.
        training_extras (bool): Include the data, Split, label-shrinking
            and loss layers a model saved from a training net holds, in
            place of the inference net's ``conv6_interp``.
        type_style (str): ``'released'`` (``ConvolutionData``...) or
            ``'prototxt'`` (``Convolution``...), see :data:`TYPE_STYLES`.

    Returns:
        list of Layer
    """
    types = TYPE_STYLES[type_style]
    layers = []

    def add(name, type_, bottom, top, blob_shapes=(), conv=None, pool=None,
            interp=None):
        layers.append(Layer(name, type_, list(bottom), list(top),
                            [tuple(s) for s in blob_shapes], conv, pool,
                            interp))

    def conv_bn(name, bottom, in_ch, out_ch, ksize, stride=1, pad=0,
                dilate=1, relu=True):
        type_ = types['hole'] if dilate > 1 else types['conv']
        conv = dict(num_output=out_ch, bias_term=False, pad=pad,
                    kernel_size=ksize, stride=stride)
        if dilate > 1:
            conv['hole'] = dilate
        add(name, type_, [bottom], [name],
            [(out_ch, in_ch, ksize, ksize)], conv=conv)
        add(name + '/bn', types['bn'], [name], [name], [(1, out_ch, 1, 1)] * 4)
        if relu:
            add(name + '/relu', 'ReLU', [name], [name])
        return name

    def split(producer, blob):
        if training_extras:
            add('{}_{}_0_split'.format(producer, blob), 'Split', [blob],
                [blob + '_split_0', blob + '_split_1'])

    if training_extras:
        add('data', 'ImageSegData', [], ['data', 'label'])
    h = conv_bn('conv1_1_3x3_s2', 'data', 3, 64, 3, 2, 1)
    h = conv_bn('conv1_2_3x3', h, 64, 64, 3, 1, 1)
    h = conv_bn('conv1_3_3x3', h, 64, 128, 3, 1, 1)
    add('pool1_3x3_s2', 'Pooling', [h], ['pool1_3x3_s2'],
        pool=dict(pool='MAX', kernel_size=3, stride=2, pad=1))
    h, producer, in_ch = 'pool1_3x3_s2', 'pool1_3x3_s2', 128
    n4 = UNITS[n_layer][2]
    for stage, n_unit in zip((2, 3, 4, 5), UNITS[n_layer]):
        mid, out = STAGE_CHANNELS[stage]
        dilate = STAGE_DILATION[stage]
        for m in range(1, n_unit + 1):
            split(producer, h)
            prefix = 'conv{}_{}'.format(stage, m)
            stride = 2 if (stage, m) == (3, 1) else 1
            r = conv_bn(prefix + '_1x1_reduce', h, in_ch, mid, 1)
            r = conv_bn(prefix + '_3x3', r, mid, mid, 3, stride, dilate,
                        dilate)
            r = conv_bn(prefix + '_1x1_increase', r, mid, out, 1, relu=False)
            shortcut = h
            if m == 1:
                shortcut = conv_bn(prefix + '_1x1_proj', h, in_ch, out, 1,
                                   stride, relu=False)
            add(prefix, 'Eltwise', [shortcut, r], [prefix])
            add(prefix + '/relu', 'ReLU', [prefix], [prefix])
            h, producer, in_ch = prefix, prefix + '/relu', out
        if stage == 4 and aux:
            split(producer, h)
            name = 'conv4_{}'.format(n4 + 1)
            a = conv_bn(name, h, 1024, 256, 3, 1, 1)
            add(name + '/dropout', 'Dropout', [a], [a])
            add('conv6_1', types['conv'], [a], ['conv6_1'],
                [(n_class, 256, 1, 1), (n_class,)],
                conv=dict(num_output=n_class, kernel_size=1, stride=1))
            if training_extras:
                add('loss_aux', 'SoftmaxWithLoss', ['conv6_1', 'label'],
                    ['loss_aux'])

    feature = feature_size(input_size)
    split(producer, h)
    branches = []
    for bin_ in PYRAMID_BINS_IN_FILE_ORDER:
        pool = 'conv5_3_pool{}'.format(bin_)
        window = feature // bin_
        add(pool, 'Pooling', [h], [pool], pool=dict(
            pool='AVE', kernel_size=window, stride=window))
        c = conv_bn(pool + '_conv', pool, 2048, 512, 1)
        add(pool + '_interp', 'Interp', [c], [pool + '_interp'],
            interp=dict(height=feature, width=feature))
        branches.append(pool + '_interp')
    add('conv5_3_concat', 'Concat', [h] + branches[::-1], ['conv5_3_concat'])
    c = conv_bn('conv5_4', 'conv5_3_concat', 4096, 512, 3, 1, 1)
    add('conv5_4/dropout', 'Dropout', [c], [c])
    add('conv6', types['conv'], [c], ['conv6'],
        [(n_class, 512, 1, 1), (n_class,)],
        conv=dict(num_output=n_class, kernel_size=1, stride=1))
    if training_extras:
        # A training net scores at 1/8 of the input against a shrunk label
        # and has no conv6_interp (ChainerCV's converter, which reads the
        # released files, would fail on one).
        add('label_shrink', 'Interp', ['label'], ['label_shrink'])
        add('loss', 'SoftmaxWithLoss', ['conv6', 'label_shrink'], ['loss'])
    else:
        add('conv6_interp', 'Interp', ['conv6'], ['conv6_interp'],
            interp=dict(zoom_factor=8))
    return layers


def blob_values(name, index, shape, seed=0, values='random'):
    """The values the factory writes into blob ``index`` of layer ``name``.

    Convolution weights are He-normal, BN blobs plausible (scale near 1,
    variance positive), so the converted network computes finite scores.

    Returns:
        numpy.ndarray: float32 of ``shape``.
    """
    shape = tuple(shape)
    if values == 'zeros':
        return np.zeros(shape, dtype=np.float32)
    rng = np.random.default_rng(zlib.crc32('{}:{}:{}'.format(
        seed, name, index).encode()))
    size = int(np.prod(shape))
    if name.endswith('/bn'):
        low, high = ((0.5, 1.5), (-0.2, 0.2), (-0.2, 0.2), (0.5, 2.0))[index]
        return rng.uniform(low, high, size).astype(np.float32).reshape(shape)
    if index == 1:  # a classifier's bias
        return rng.uniform(-0.1, 0.1, size).astype(np.float32).reshape(shape)
    fan_in = int(np.prod(shape[1:]))
    array = rng.standard_normal(size, dtype=np.float32)
    array *= np.float32(np.sqrt(2.0 / fan_in))
    return array.reshape(shape)


def _layer_message(m, layer, blob_arrays, flavour, legacy_dims):
    msg = m.LayerParameter(name=layer.name, type=layer.type)
    msg.bottom.extend(layer.bottom)
    msg.top.extend(layer.top)
    if layer.conv is not None:
        msg.convolution_param.SetInParent()
        for key, value in layer.conv.items():
            setattr(msg.convolution_param, key, value)
    if layer.pool is not None:
        msg.pooling_param.SetInParent()
        for key, value in layer.pool.items():
            if key == 'pool':
                value = m.PoolingParameter.PoolMethod.Value(value)
            setattr(msg.pooling_param, key, value)
    if layer.interp is not None:
        msg.interp_param.SetInParent()
        for key, value in layer.interp.items():
            setattr(msg.interp_param, key, value)
    for array in blob_arrays:
        blob = msg.blobs.add()
        if legacy_dims and array.ndim == 4:
            blob.num, blob.channels, blob.height, blob.width = array.shape
        else:
            blob.shape.dim.extend(array.shape)
        if flavour == 'raw':
            blob.data.append(array.astype('<f4').tobytes())
        else:
            blob.data.extend(array.ravel().tolist())
    return msg


def write_caffemodel(path, n_layer=50, n_class=150, input_size=473,
                     aux=True, training_extras=True, type_style='released',
                     seed=0, values='random', omit=(), blob_shapes=None,
                     blobless=True, flavour='raw', legacy_dims=False,
                     net_name=None):
    """Write a synthetic PSPNet caffemodel.

    Args:
        path (str): The file to write.
        n_layer, n_class, input_size, aux, training_extras, type_style: See
            :func:`pspnet_layers`.
        seed (int): Seed of the values (see :func:`blob_values`).
        values (str): ``'random'`` or ``'zeros'`` (faster, for files meant
            to be refused).
        omit (iterable of str): Names of layers to leave out.
        blob_shapes (dict): Layer name to a list of blob shapes that replace
            the right ones (a damaged file).
        blobless (bool): Include the layers without blobs.
        flavour (str): Schema flavour that encodes the blobs: ``'raw'``
            (packed, fast), ``'float'`` (packed, value by value) or
            ``'unpacked'`` (one record per value, as old writers may do).
        legacy_dims (bool): Give 4-D blob shapes as num/channels/height/
            width instead of ``shape``.
        net_name (str): ``NetParameter.name``.

    Returns:
        list of Layer: The layers written (with the shapes written).
    """
    m = schema.messages(flavour)
    layers = []
    for layer in pspnet_layers(n_layer, n_class, input_size, aux,
                               training_extras, type_style):
        if layer.name in omit or (not blobless and not layer.blob_shapes):
            continue
        if blob_shapes and layer.name in blob_shapes:
            layer = layer._replace(blob_shapes=[
                tuple(s) for s in blob_shapes[layer.name]])
        layers.append(layer)
    with open(path, 'wb') as f:
        f.write(m.NetParameter(name=net_name or 'pspnet{}'.format(
            n_layer)).SerializeToString())
        for layer in layers:
            arrays = [blob_values(layer.name, i, shape, seed, values)
                      for i, shape in enumerate(layer.blob_shapes)]
            net = m.NetParameter()
            net.layer.append(_layer_message(m, layer, arrays, flavour,
                                            legacy_dims))
            f.write(net.SerializeToString())
            del net, arrays
    return layers


def prototxt_text(n_layer=101, n_class=19, input_size=713):
    """The text prototxt of the inference net (no blobs, no training
    layers), as PSPNet's evaluation prototxts describe it."""
    m = schema.messages('float')
    net = m.NetParameter(name='pspnet{}'.format(n_layer))
    for layer in pspnet_layers(n_layer, n_class, input_size, aux=False,
                               training_extras=False, type_style='prototxt'):
        net.layer.append(_layer_message(m, layer._replace(blob_shapes=[]),
                                        [], 'float', False))
    return text_format.MessageToString(net)
