"""Pretrained weights: ChainerCV's published files, local files, and checks
that a weight file fits the model before it is loaded."""

import os
import shutil
import zipfile

import chainer
import numpy as np

from pspnet.cache import cache_directory
from pspnet.cache import cache_lock
from pspnet.cache import download
from pspnet.errors import UserError

_URL_ROOT = 'https://chainercv-models.preferred.jp/'

# ChainerCV 0.13.1's published weights. ``param`` is what the weights fix.
PRESETS = {
    50: {
        'cityscapes': {
            'param': {'n_class': 19, 'input_size': (713, 713)},
            'url': _URL_ROOT
            + 'pspnet_resnet50_cityscapes_trained_2018_12_19.npz'},
        'ade20k': {
            'param': {'n_class': 150, 'input_size': (473, 473)},
            'url': _URL_ROOT
            + 'pspnet_resnet50_ade20k_trained_2018_12_23.npz'},
        'imagenet': {
            'param': {},
            'url': _URL_ROOT
            + 'pspnet_resnet50_imagenet_trained_2018_11_26.npz'},
    },
    101: {
        'cityscapes': {
            'param': {'n_class': 19, 'input_size': (713, 713)},
            'url': _URL_ROOT
            + 'pspnet_resnet101_cityscapes_trained_2018_12_19.npz'},
        'ade20k': {
            'param': {'n_class': 150, 'input_size': (473, 473)},
            'url': _URL_ROOT
            + 'pspnet_resnet101_ade20k_trained_2018_12_23.npz'},
        'imagenet': {
            'param': {},
            'url': _URL_ROOT
            + 'pspnet_resnet101_imagenet_trained_2018_11_26.npz'},
    },
}


def download_model(url):
    """Download a weight file once into Chainer's dataset cache.

    The file goes to ``$CHAINER_DATASET_ROOT/pfnet/chainercv/models/``, the
    place ChainerCV uses, so weights ChainerCV already downloaded are
    reused. Concurrent processes (ChainerMN ranks) wait on a file lock.

    Returns:
        str: Path of the cached file.

    Raises:
        UserError: The download failed (offline, server error).
    """
    path = os.path.join(cache_directory('models'), os.path.basename(url))
    with cache_lock('models'):
        if os.path.exists(path):
            return path
        cache_path = download(
            url, 'download it elsewhere and pass its local path as the '
            'pretrained model, or put it at {}'.format(path))
        shutil.move(cache_path, path)
    return path


def resolve(pretrained_model, n_layer):
    """Turn a ``pretrained_model`` argument into a preset and a file path.

    Args:
        pretrained_model (str or None): A preset name (``'cityscapes'``,
            ``'ade20k'``, ``'imagenet'``), a file path, or None.
        n_layer (int): 50 or 101.

    Returns:
        tuple: ``(param, path)``: the parameters the preset fixes (an empty
        dict for files and None) and the local path (None for None). Preset
        files are downloaded if needed.
    """
    if not pretrained_model:
        return {}, None
    presets = PRESETS[n_layer]
    if pretrained_model in presets:
        preset = presets[pretrained_model]
        return dict(preset['param']), download_model(preset['url'])
    if not os.path.isfile(pretrained_model):
        raise UserError(
            'weight file {!r} does not exist; pass an existing .npz file or '
            'one of {}'.format(pretrained_model, ', '.join(sorted(presets))))
    return {}, pretrained_model


def read_npz_shapes(path):
    """Read the name and shape of every array in an npz file.

    Returns:
        dict: Name to shape tuple.

    Raises:
        UserError: The file is not an npz or is truncated or corrupt.
    """
    with open(path, 'rb') as f:
        head = f.read(4)
    if not head.startswith(b'PK'):
        raise UserError('{} is not an .npz weight file; pass a file written '
                        'by chainer.serializers.save_npz'.format(path))
    # Only each array's .npy header is read: the arrays themselves are read
    # once, by load_npz, which reports damaged data the same way.
    try:
        shapes = {}
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename
                if name.endswith('.npy'):
                    name = name[:-len('.npy')]
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        header = np.lib.format.read_array_header_1_0(member)
                    else:
                        header = np.lib.format.read_array_header_2_0(member)
                shapes[name] = header[0]
        return shapes
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise UserError('{} is truncated or corrupt ({}); download or '
                        'convert it again'.format(path, e))


def link_shapes(link):
    """Name and shape of every array ``save_npz`` would write for a link."""
    target = {}
    link.serialize(chainer.serializers.DictionarySerializer(target))
    return {name: np.shape(value) for name, value in target.items()
            if value is not None}


def _depth_of(shapes, prefix=''):
    # ResNet101 has 23 units in res4, ResNet50 has 6.
    if any(k.startswith(prefix + 'res4/b22/') for k in shapes):
        return 101
    if any(k.startswith(prefix + 'res4/b5/') for k in shapes):
        return 50
    return None


def n_class_of(path):
    """The class count stored in a PSPNet npz (its classifier's outputs)."""
    shapes = read_npz_shapes(path)
    shape = shapes.get('head_conv2/W')
    if shape is None:
        raise UserError(
            '{} holds no classifier (head_conv2/W); it is not a PSPNet '
            'weight file, or only an extractor (use it for training as '
            '--pretrained-model)'.format(path))
    return shape[0]


def check_fits(link, path, what='PSPNet', except_prefix=None):
    """Check that an npz file has exactly the link's arrays and shapes.

    Args:
        link (chainer.Link): The link the file is for.
        path (str): The npz file.
        what (str): The link, as error messages name it.
        except_prefix (str or None): Arrays whose names start with it are
            left out of the comparison, in the file and in the link.

    Raises:
        UserError: The message says what does not fit: another depth,
        another class count, an extractor-only file, or the names missing
        and left over.
    """
    expected = link_shapes(link)
    found = read_npz_shapes(path)
    if except_prefix:
        expected, found = ({k: v for k, v in shapes.items()
                            if not k.startswith(except_prefix)}
                           for shapes in (expected, found))
    if found == expected:
        return
    prefix = 'extractor/' if 'extractor/conv1_1/conv/W' in expected else ''
    model_depth = _depth_of(expected, prefix)
    file_depth = _depth_of(found, prefix) or _depth_of(found)
    if prefix and 'extractor/conv1_1/conv/W' not in found \
            and 'conv1_1/conv/W' in found:
        raise UserError(
            '{} holds only a ResNet extractor (like the ImageNet weights), '
            'not a whole PSPNet; use it as the extractor (train_multi.py '
            '--pretrained-model) or pass full PSPNet weights'.format(path))
    if model_depth and file_depth and model_depth != file_depth:
        raise UserError(
            '{} holds ResNet{} weights but the model is ResNet{}; use '
            'PSPNetResNet{} (--model pspnet_resnet{})'.format(
                path, file_depth, model_depth, file_depth, file_depth))
    classifier = 'head_conv2/W'
    if classifier in expected and classifier in found \
            and found[classifier][0] != expected[classifier][0]:
        raise UserError(
            '{} was trained for {} classes but the model has {}; build the '
            'model with n_class={} (or the matching --dataset)'.format(
                path, found[classifier][0], expected[classifier][0],
                found[classifier][0]))
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found)
                   if expected[k] != found[k])
    parts = []
    if missing:
        parts.append('{} missing (e.g. {})'.format(
            len(missing), ', '.join(missing[:3])))
    if extra:
        parts.append('{} unexpected (e.g. {})'.format(
            len(extra), ', '.join(extra[:3])))
    if wrong:
        parts.append('{} of another shape (e.g. {}: {} in the file, {} in '
                     'the model)'.format(len(wrong), wrong[0],
                                         found[wrong[0]], expected[wrong[0]]))
    raise UserError('{} does not fit {}: arrays {}; pass weights written '
                    'for this model'.format(path, what, '; '.join(parts)))


def load_npz(link, path, what='PSPNet', except_prefix=None):
    """Load an npz into a link strictly, after :func:`check_fits`; arrays
    whose names start with ``except_prefix`` are neither checked nor
    loaded."""
    check_fits(link, path, what, except_prefix)
    ignore = (lambda name: name.startswith(except_prefix)) \
        if except_prefix else None
    try:
        chainer.serializers.load_npz(path, link, ignore_names=ignore)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise UserError('{} is truncated or corrupt ({}); download or '
                        'convert it again'.format(path, e))
