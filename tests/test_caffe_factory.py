"""The synthetic caffemodels used to test caffe2npz.py are PSPNet's layout:
names, order, types and shapes as in PSPNet's prototxts, field numbers as in
PSPNet's caffe.proto, and a file protobuf reads as one NetParameter."""

import os

import numpy as np
import pytest
from google.protobuf import text_format

from pspnet.caffe import schema
from pspnet.links import PSPNetResNet101
from pspnet.links import PSPNetResNet50
from pspnet.pretrained import link_shapes
from tests.helpers import caffemodel_factory as factory


def param_layers(layers):
    return [layer for layer in layers if layer.blob_shapes]


@pytest.mark.parametrize('n_layer, n_units', [(50, 6), (101, 23)])
def test_layer_names_and_order_follow_pspnet(n_layer, n_units):
    layers = factory.pspnet_layers(n_layer, 21, 473)
    names = [layer.name for layer in layers]
    with_blobs = [layer.name for layer in param_layers(layers)]
    assert with_blobs[:6] == [
        'conv1_1_3x3_s2', 'conv1_1_3x3_s2/bn', 'conv1_2_3x3',
        'conv1_2_3x3/bn', 'conv1_3_3x3', 'conv1_3_3x3/bn']
    assert with_blobs[6:14] == [
        'conv2_1_1x1_reduce', 'conv2_1_1x1_reduce/bn', 'conv2_1_3x3',
        'conv2_1_3x3/bn', 'conv2_1_1x1_increase', 'conv2_1_1x1_increase/bn',
        'conv2_1_1x1_proj', 'conv2_1_1x1_proj/bn']
    last_unit = 'conv4_{}_1x1_increase'.format(n_units)
    assert last_unit in names
    assert 'conv4_{}_1x1_reduce'.format(n_units + 1) not in names
    aux = 'conv4_{}'.format(n_units + 1)
    assert with_blobs.index(aux) > with_blobs.index(last_unit + '/bn')
    assert with_blobs.index('conv6_1') < with_blobs.index('conv5_1_1x1_reduce')
    assert with_blobs[-11:] == [
        'conv5_3_pool1_conv', 'conv5_3_pool1_conv/bn',
        'conv5_3_pool2_conv', 'conv5_3_pool2_conv/bn',
        'conv5_3_pool3_conv', 'conv5_3_pool3_conv/bn',
        'conv5_3_pool6_conv', 'conv5_3_pool6_conv/bn',
        'conv5_4', 'conv5_4/bn', 'conv6']
    kinds = {layer.type for layer in layers if not layer.blob_shapes}
    assert kinds == {'ImageSegData', 'ReLU', 'Pooling', 'Split', 'Eltwise',
                     'Dropout', 'Interp', 'Concat', 'SoftmaxWithLoss'}


def test_types_dilation_and_pyramid_windows():
    layers = {layer.name: layer for layer in factory.pspnet_layers(
        101, 19, 713, type_style='released')}
    assert layers['conv3_4_3x3'].type == 'ConvolutionData'
    assert layers['conv4_1_3x3'].type == 'HoleConvolutionData'
    assert layers['conv4_1_3x3'].conv['hole'] == 2
    assert layers['conv4_1_3x3'].conv['pad'] == 2
    assert layers['conv5_3_3x3'].conv['hole'] == 4
    assert layers['conv3_1_3x3'].conv['stride'] == 2
    assert layers['conv3_1_1x1_proj'].conv['stride'] == 2
    assert layers['conv2_1_3x3/bn'].type == 'BNData'
    assert layers['conv6'].type == 'ConvolutionData'
    assert 'bias_term' not in layers['conv6'].conv  # Caffe's default: true
    assert layers['conv5_4'].conv['bias_term'] is False
    windows = {b: layers['conv5_3_pool{}'.format(b)].pool['kernel_size']
               for b in (1, 2, 3, 6)}
    assert windows == {1: 90, 2: 45, 3: 30, 6: 15}
    assert layers['conv5_3_pool6_interp'].interp == dict(height=90, width=90)
    prototxt = {layer.name: layer for layer in factory.pspnet_layers(
        50, 150, 473, type_style='prototxt')}
    assert prototxt['conv4_1_3x3'].type == 'HoleConvolution'
    assert prototxt['conv4_1_3x3/bn'].type == 'BN'
    assert prototxt['conv5_3_pool1'].pool['kernel_size'] == 60
    assert prototxt['conv5_3_pool6'].pool['kernel_size'] == 10


@pytest.mark.parametrize('n_layer, link', [(50, PSPNetResNet50),
                                           (101, PSPNetResNet101)])
def test_blobs_hold_as_many_values_as_the_model(n_layer, link):
    # Counted without any layer-to-array mapping, so that this stays an
    # independent check of the shapes.
    n_class = 19
    layers = factory.pspnet_layers(n_layer, n_class, 713, aux=False)
    in_file = sum(int(np.prod(s)) for layer in layers
                  for s in layer.blob_shapes)
    model = link(n_class, input_size=97, initialW=np.float32(0))
    in_model = sum(int(np.prod(s)) for name, s in link_shapes(model).items()
                   if not name.endswith('/N'))
    assert in_file == in_model
    bn = [s for layer in layers if layer.name.endswith('/bn')
          for s in layer.blob_shapes]
    assert all(len(s) == 4 and s[0] == s[2] == s[3] == 1 for s in bn)


def test_wire_format_uses_pspnet_field_numbers():
    # Field numbers of hszhao/PSPNet's caffe.proto, written out as bytes:
    # NetParameter.layer = 100, LayerParameter.name = 1, type = 2,
    # blobs = 7, convolution_param = 106, pooling_param = 121,
    # interp_param = 163, BlobProto.data = 5 (packed), shape = 7,
    # BlobShape.dim = 1 (packed).
    m = schema.messages('float')
    layer = factory._layer_message(
        m, factory.Layer('c', 'T', [], [], [(1, 2, 1, 1)], dict(hole=2),
                         dict(kernel_size=3), dict(height=5)),
        [np.array([1.5, -2.0], np.float32).reshape(1, 2, 1, 1)], 'float',
        False)
    net = m.NetParameter()
    net.layer.append(layer)
    data = net.SerializeToString()
    assert data.startswith(b'\xa2\x06')  # field 100, length-delimited
    body = layer.SerializeToString()
    assert body.startswith(b'\x0a\x01c\x12\x01T')
    blob = b'\x2a\x08' + np.array([1.5, -2.0], '<f4').tobytes() + \
        b'\x3a\x06\x0a\x04\x01\x02\x01\x01'
    assert b'\x3a' + bytes([len(blob)]) + blob in body
    assert b'\xd2\x06\x03\x88\x01\x02' in body  # convolution_param.hole
    assert b'\xca\x07\x02\x10\x03' in body  # pooling_param.kernel_size
    assert b'\x9a\x0a\x02\x08\x05' in body  # interp_param.height


def test_flavours_agree_on_the_wire():
    values = np.arange(6, dtype=np.float32).reshape(1, 6, 1, 1) - 2.5
    layer = factory.Layer('conv1_1_3x3_s2/bn', 'BN', [], [],
                          [values.shape], None, None, None)
    encoded = {flavour: factory._layer_message(
        schema.messages(flavour), layer, [values], flavour,
        False).SerializeToString() for flavour in schema.FLAVOURS}
    assert encoded['raw'] == encoded['float']
    assert encoded['unpacked'] != encoded['float']
    as_floats = schema.messages('float').LayerParameter.FromString(
        encoded['unpacked'])
    np.testing.assert_array_equal(as_floats.blobs[0].data, values.ravel())


def test_blob_values_are_reproducible_and_plausible():
    a = factory.blob_values('conv5_4', 0, (512, 4096, 3, 3))
    b = factory.blob_values('conv5_4', 0, (512, 4096, 3, 3))
    assert a.dtype == np.float32 and a.shape == (512, 4096, 3, 3)
    np.testing.assert_array_equal(a, b)
    assert abs(a.std() - np.sqrt(2 / (4096 * 9))) < 1e-3
    assert not np.array_equal(
        factory.blob_values('conv5_4', 0, (4, 4, 1, 1)),
        factory.blob_values('conv5_4', 0, (4, 4, 1, 1), seed=1))
    var = factory.blob_values('conv5_4/bn', 3, (1, 512, 1, 1))
    assert var.min() > 0
    assert not factory.blob_values('x', 0, (3, 3), values='zeros').any()


def test_written_file_is_one_netparameter(tmp_path):
    # The smallest complete file is still 190 MB; write it once, with zeros
    # for speed, and read it back with the schema Caffe itself uses.
    path = str(tmp_path / 'pspnet50.caffemodel')
    try:
        layers = factory.write_caffemodel(path, 50, 150, 473,
                                          values='zeros')
        with open(path, 'rb') as f:
            net = schema.messages('float').NetParameter.FromString(f.read())
        assert net.name == 'pspnet50'
        assert [layer.name for layer in net.layer] == \
            [layer.name for layer in layers]
        conv6 = net.layer[[layer.name for layer in net.layer].index('conv6')]
        assert conv6.type == 'ConvolutionData'
        assert list(conv6.blobs[0].shape.dim) == [150, 512, 1, 1]
        assert len(conv6.blobs[0].data) == 150 * 512
        assert len(conv6.blobs[1].data) == 150
        assert conv6.convolution_param.bias_term
        pool1 = net.layer[[layer.name for layer in net.layer].index(
            'conv5_3_pool1')]
        assert pool1.pooling_param.kernel_size == 60
        assert pool1.pooling_param.pool == 1  # AVE
    finally:
        if os.path.exists(path):
            os.remove(path)


def test_prototxt_text_describes_the_inference_net():
    text = factory.prototxt_text(101, 19, 713)
    net = text_format.Parse(text, schema.messages('float').NetParameter())
    names = [layer.name for layer in net.layer]
    assert 'conv4_24' not in names and 'conv6_1' not in names
    assert names[0] == 'conv1_1_3x3_s2' and names[-1] == 'conv6_interp'
    assert all(not layer.blobs for layer in net.layer)
    types = {layer.type for layer in net.layer}
    assert {'Convolution', 'HoleConvolution', 'BN'} <= types
