"""PSPNet's Caffe layer names and where their blobs go in the Chainer link.

The names are those of the models released with PSPNet (hszhao/PSPNet):

* ``conv1_1_3x3_s2``, ``conv1_2_3x3``, ``conv1_3_3x3``: the stem
  (``extractor/conv1_1`` ...). The first one sees BGR images in Caffe, so
  its input channels are reversed for the RGB link.
* ``conv{N}_{M}_1x1_reduce``, ``_3x3``, ``_1x1_increase`` and (for M = 1)
  ``_1x1_proj``: unit M of stage N (``extractor/res{N}/a`` for M = 1, then
  ``b1``, ``b2``...): ``conv1``, ``conv2``, ``conv3``, ``residual_conv``.
* ``conv5_3_pool{6,3,2,1}_conv``: the pyramid branches ``ppm/0`` to ``ppm/3``
  (bins 6, 3, 2, 1).
* ``conv5_4``: ``head_conv1``; ``conv6``: ``head_conv2``, the classifier,
  the only convolution with a bias.
* ``<convolution>/bn``: the batch normalization after that convolution,
  four blobs of shape (1, C, 1, 1): scale, shift, running mean, running
  variance (``gamma``, ``beta``, ``avg_mean``, ``avg_var``).
* ``conv4_{n+1}``, ``conv4_{n+1}/bn``, ``conv6_1`` (n + 1 = 24 for
  ResNet101, 7 for ResNet50: the number after stage 4's last unit): the
  auxiliary classifier used only in training, on res4: a 3x3 convolution
  to 256 channels without bias, its BN (then ReLU and dropout), and a 1x1
  convolution with bias to the classes (as hszhao/semseg's PyTorch
  PSPNet, ``aux``). With ``--with-aux`` they go to the training chain's
  ``aux_conv1`` (``conv/W``, ``bn/...``) and ``aux_conv2`` (``W``, ``b``),
  see :class:`pspnet.training.train_chain.TrainChain`.

Type strings: PSPNet's prototxts say ``Convolution``, ``HoleConvolution``
(dilated) and ``BN``; the released caffemodels say ``ConvolutionData``,
``HoleConvolutionData`` and ``BNData``. Both are accepted.
"""

import collections
import re

from pspnet.datasets import registry
from pspnet.datasets.spec import DEFAULT_INPUT_SIZE
from pspnet.errors import UserError
from pspnet.links.pspnet import PYRAMID_BINS
from pspnet.links.resnet import Bottleneck
from pspnet.links.resnet import DilatedResNet
from pspnet.links.resnet import unit_name
from pspnet.training.train_chain import AUX_LINKS

CONVOLUTION_TYPES = ('Convolution', 'ConvolutionData', 'HoleConvolution',
                     'HoleConvolutionData')
BN_TYPES = ('BN', 'BNData')

#: Link arrays of a BN layer's four blobs, in blob order.
BN_ARRAYS = ('gamma', 'beta', 'avg_mean', 'avg_var')

#: Caffe's suffixes of a unit's convolutions, in the order of the link's
#: :attr:`~pspnet.links.Bottleneck.conv_names`.
_BOTTLENECK_SUFFIXES = ('1x1_reduce', '3x3', '1x1_increase', '1x1_proj')
#: Caffe's stage numbers, in the order of the link's stages.
_STAGE_NUMBERS = (2, 3, 4, 5)
_UNIT_PATTERN = re.compile(r'^conv4_(\d+)_(?:1x1_reduce|3x3|1x1_increase|'
                           r'1x1_proj)$')
#: Caffe's names of the stem's convolutions, in the link's order.
_STEM_LAYERS = ('conv1_1_3x3_s2', 'conv1_2_3x3', 'conv1_3_3x3')
CLASSIFIER = 'conv6'
POOL1 = 'conv5_3_pool1'

#: Kinds of layers with parameters, in the order reports list them.
KINDS = ('convolution', 'batch normalization', 'classifier')

Target = collections.namedtuple('Target', ['kind', 'arrays',
                                           'reverse_channels'])
Target.__doc__ = """Where one Caffe layer's blobs go.

    kind (str): ``'convolution'``, ``'batch normalization'`` or
        ``'classifier'``.
    arrays (tuple of str): Name of the link array (as ``save_npz`` writes
        it) that takes each blob, in blob order.
    reverse_channels (bool): Reverse the input channels (BGR to RGB).
"""

ModelSpec = collections.namedtuple('ModelSpec', ['n_layer', 'n_class',
                                                 'input_size', 'input_from'])
ModelSpec.__doc__ = """The PSPNet a caffemodel holds.

    n_layer (int): 50 or 101.
    n_class (int): Number of classes.
    input_size (tuple of ints): (height, width) it was trained at.
    input_from (str): How the input size was found, for the report.
"""


def canonical_name(name):
    """A layer name with the ``_bn`` spelling of ``/bn`` normalised."""
    return name[:-3] + '/bn' if name.endswith('_bn') else name


def _conv_bn(layer, link, reverse_channels=False):
    return {
        layer: Target('convolution', (link + '/conv/W',), reverse_channels),
        layer + '/bn': Target('batch normalization', tuple(
            '{}/bn/{}'.format(link, a) for a in BN_ARRAYS), False),
    }


def targets(n_layer):
    """Every PSPNet layer with parameters, for a depth.

    Args:
        n_layer (int): 50 or 101.

    Returns:
        collections.OrderedDict: Layer name to :class:`Target`, in the order
        of the network.
    """
    result = collections.OrderedDict()
    for i, (layer, link) in enumerate(zip(_STEM_LAYERS,
                                          DilatedResNet.stem_names)):
        result.update(_conv_bn(layer, 'extractor/' + link,
                               reverse_channels=i == 0))
    for number, stage, n_unit in zip(
            _STAGE_NUMBERS, DilatedResNet.stage_names,
            DilatedResNet.units_per_stage[n_layer]):
        for m in range(1, n_unit + 1):
            # The first unit of every stage has the projection.
            for suffix, conv in zip(_BOTTLENECK_SUFFIXES,
                                    Bottleneck.conv_names):
                if conv == 'residual_conv' and m != 1:
                    continue
                result.update(_conv_bn(
                    'conv{}_{}_{}'.format(number, m, suffix),
                    'extractor/{}/{}/{}'.format(stage, unit_name(m - 1),
                                                conv)))
    for index, bin_ in enumerate(PYRAMID_BINS):
        result.update(_conv_bn('conv5_3_pool{}_conv'.format(bin_),
                               'ppm/{}'.format(index)))
    result.update(_conv_bn('conv5_4', 'head_conv1'))
    result[CLASSIFIER] = Target('classifier', ('head_conv2/W', 'head_conv2/b'),
                                False)
    return result


def auxiliary_layers(n_layer):
    """Names of the auxiliary training branch's layers with parameters."""
    aux = 'conv4_{}'.format(DilatedResNet.units_per_stage[n_layer][2] + 1)
    return (aux, aux + '/bn', 'conv6_1')


def auxiliary_targets(n_layer):
    """Where the auxiliary branch's layers go in the training chain, for a
    depth (the npz names a :class:`~pspnet.training.train_chain.TrainChain`
    writes for ``aux_conv1`` and ``aux_conv2``).

    Returns:
        collections.OrderedDict: Layer name to :class:`Target`.
    """
    conv, bn, classifier = auxiliary_layers(n_layer)
    first, second = AUX_LINKS
    result = collections.OrderedDict(_conv_bn(conv, first))
    result[classifier] = Target('classifier', (second + '/W', second + '/b'),
                                False)
    assert list(result) == [conv, bn, classifier]
    return result


def _input_size_from_feature(feature):
    # Inverse of the feature size the network computes at stride 8:
    # 473 -> 60, 713 -> 90.
    return tuple(8 * (f - 1) + 1 for f in feature)


def infer_model(records, path, default_input_sizes=None):
    """Find the depth, class count and input size of a PSPNet caffemodel
    from its layers.

    Args:
        records (list of pspnet.caffe.reader.LayerRecord): The layers.
        path (str): The file, for messages.
        default_input_sizes (dict): Class count to input size, used when the
            file holds no pyramid pooling layers to read it from.

    Returns:
        ModelSpec

    Raises:
        UserError: Not a PSPNet caffemodel, another depth, no classifier.
    """
    with_blobs = [r for r in records if r.blob_shapes]
    names = {canonical_name(r.name): r for r in with_blobs}
    known = set(targets(50)) | set(targets(101))
    if not known & set(names):
        sample = ', '.join(r.name for r in with_blobs[:3]) or 'none'
        raise UserError(
            '{} is not a PSPNet caffemodel: none of its {} layers with '
            'parameters has a PSPNet name such as conv1_1_3x3_s2 or conv6 '
            '(its first: {}); pass pspnet50_ADE20K, pspnet101_VOC2012 or '
            'pspnet101_cityscapes.caffemodel'.format(
                path, len(with_blobs), sample))
    units = [int(m.group(1)) for m in map(_UNIT_PATTERN.match, names) if m]
    by_units = {DilatedResNet.units_per_stage[n][2]: n for n in (50, 101)}
    n_units = max(units) if units else 0
    if n_units not in by_units:
        raise UserError(
            '{} has {} bottleneck units in conv4, but PSPNet\'s ResNet50 has '
            '6 and its ResNet101 23; it is not one of PSPNet\'s models'
            .format(path, n_units))
    n_layer = by_units[n_units]
    classifier = names.get(CLASSIFIER)
    if classifier is None:
        raise UserError(
            '{} has no classifier layer {} (with parameters); it is not a '
            'complete PSPNet caffemodel, download it again'.format(
                path, CLASSIFIER))
    if len(classifier.blob_shapes[0]) != 4:
        raise UserError(
            '{}: the weights of {} have shape {}, not (classes, 512, 1, 1); '
            'it is not one of PSPNet\'s models'.format(
                path, CLASSIFIER, classifier.blob_shapes[0]))
    n_class = classifier.blob_shapes[0][0]

    by_name = {r.name: r for r in records}
    pool = by_name.get(POOL1)
    interps = [r.interp_size for r in records
               if r.name.startswith('conv5_3_pool') and r.interp_size]
    if pool is not None and pool.pool_kernel and min(pool.pool_kernel) > 0:
        input_size = _input_size_from_feature(pool.pool_kernel)
        input_from = 'the {}x{} window of {}'.format(
            pool.pool_kernel[0], pool.pool_kernel[1], POOL1)
    elif interps:
        input_size = _input_size_from_feature(interps[0])
        input_from = 'the {}x{} output of the pyramid\'s Interp layers' \
            .format(*interps[0])
    else:
        input_size = (default_input_sizes or {}).get(
            n_class, (DEFAULT_INPUT_SIZE,) * 2)
        input_from = 'the usual size for {} classes (the file holds no ' \
            'pyramid pooling layer to read it from)'.format(n_class)
    return ModelSpec(n_layer, n_class, tuple(input_size), input_from)


def blob_fits(blob_shape, array_shape):
    """Whether a blob of ``blob_shape`` fills an array of ``array_shape``:
    the same shape, or, for vectors, the same length with the other axes 1
    (Caffe keeps BN values as (1, C, 1, 1))."""
    if tuple(blob_shape) == tuple(array_shape):
        return True
    if len(array_shape) == 1:
        return sorted(blob_shape)[:-1] == [1] * (len(blob_shape) - 1) \
            and max(blob_shape or (1,)) == array_shape[0]
    return False
