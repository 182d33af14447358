"""Pretrained weights: what to build and what to load for a
``pretrained_model`` argument (:func:`resolve_weights`, the one place
that decides it), downloads of the published files, and checks that a
weight file fits the model before it is loaded."""

import collections
import os
import shutil
import zipfile

import chainer
import numpy as np

from pspnet.datasets import registry
from pspnet.datasets.spec import DEFAULT_INPUT_SIZE
from pspnet.cache import cache_directory
from pspnet.cache import cache_lock
from pspnet.cache import download
from pspnet.errors import UserError

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


#: Name prefixes of the training chain's auxiliary head, which a PSPNet
#: file may carry beside the model's arrays (``caffe2npz.py --with-aux``;
#: :data:`pspnet.training.train_chain.AUX_LINKS`): training loads them into
#: its chain, the inference model has no such arrays and skips them.
AUXILIARY_PREFIXES = ('aux_conv1/', 'aux_conv2/')


def auxiliary_shapes(shapes):
    """The auxiliary head's arrays among an npz's shapes (name to shape)."""
    return {k: v for k, v in shapes.items()
            if k.startswith(AUXILIARY_PREFIXES)}


def check_fits(link, path, what='PSPNet', except_prefix=None, shapes=None):
    """Check that an npz file has exactly the link's arrays and shapes.

    Args:
        link (chainer.Link): The link the file is for.
        path (str): The npz file.
        what (str): The link, as error messages name it.
        except_prefix (str or None): Arrays whose names start with it are
            left out of the comparison, in the file and in the link.
        shapes (dict or None): The file's :func:`read_npz_shapes`, if
            already read.

    Raises:
        UserError: The message says what does not fit: another depth,
        another class count, an extractor-only file, or the names missing
        and left over.
    """
    expected = link_shapes(link)
    found = read_npz_shapes(path) if shapes is None else shapes
    if _PSPNET_KEY in expected:
        found = {k: v for k, v in found.items()
                 if not k.startswith(AUXILIARY_PREFIXES)}
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


def load_npz(link, path, what='PSPNet', except_prefix=None, shapes=None):
    """Load an npz into a link strictly, after :func:`check_fits`; arrays
    whose names start with ``except_prefix`` are neither checked nor
    loaded. ``shapes``: the file's :func:`read_npz_shapes`, if already
    read."""
    check_fits(link, path, what, except_prefix, shapes)
    ignore = (lambda name: name.startswith(except_prefix)) \
        if except_prefix else None
    try:
        chainer.serializers.load_npz(path, link, ignore_names=ignore)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise UserError('{} is truncated or corrupt ({}); download or '
                        'convert it again'.format(path, e))


#: The classifier's arrays, which fine-tuning to another class count
#: leaves random.
CLASSIFIER_PREFIX = 'head_conv2/'
_EXTRACTOR_KEY = 'conv1_1/conv/W'
_PSPNET_KEY = 'extractor/conv1_1/conv/W'


class WeightPlan(collections.namedtuple('WeightPlan', (
        'n_layer', 'n_class', 'input_size', 'dataset', 'path',
        'extractor_path', 'except_prefix', 'shapes', 'description'))):
    """What :func:`resolve_weights` decided: the model to build and the
    files to load into it.

    Attributes:
        n_layer (int): 50 or 101.
        n_class (int): Classes of the model.
        input_size (int or tuple of ints): Its input size.
        dataset (pspnet.datasets.spec.DatasetSpec or None): The
            dataset whose classes the model has: the one asked for, else
            the one the weights were trained on (by preset or class count).
        path (str or None): A PSPNet npz to load into the whole model.
        extractor_path (str or None): An extractor npz (ImageNet) to load
            into ``model.extractor``.
        except_prefix (str or None): Arrays of ``path`` not loaded (the
            classifier, when fine-tuning to another class count).
        shapes (dict or None): ``path``'s or ``extractor_path``'s array
            shapes, when already read (each header is read once).
        description (str): What is loaded, for logs.
    """

    __slots__ = ()

    @property
    def loads_every_array(self):
        """True when the files overwrite every array of the model."""
        return self.path is not None and self.except_prefix is None

    def load_into(self, model):
        """Load the planned files into a freshly built ``model``.

        Raises:
            UserError: A file does not fit the model (another depth,
            truncated...), see :func:`check_fits`.
        """
        if self.extractor_path is not None:
            load_npz(model.extractor, self.extractor_path,
                     'a ResNet{} extractor'.format(self.n_layer),
                     shapes=self.shapes)
        if self.path is not None:
            what = 'PSPNetResNet{} with {} classes'.format(self.n_layer,
                                                           self.n_class)
            if self.except_prefix:
                what = 'PSPNetResNet{}'.format(self.n_layer)
            load_npz(model, self.path, what, self.except_prefix,
                     self.shapes)


def _class_count_conflict(source, found, n_class, dataset, preset):
    if dataset is not None and dataset.name.endswith('.json'):
        return UserError(
            'the weights {!r} have {} classes but the dataset file {} lists '
            '{}; pass weights trained on it (train_multi.py --dataset {}) or '
            'the dataset file of those weights'.format(
                source, found, dataset.name, n_class, dataset.name))
    if dataset is not None:
        return UserError(
            'the weights {!r} have {} classes but {} has {}; pass weights '
            'trained on {}'.format(source, found, dataset.name, n_class,
                                   dataset.name))
    if preset:
        return UserError(
            'the {!r} weights have {} classes, not {}; drop n_class or use '
            'other weights'.format(source, found, n_class))
    return UserError(
        '{} was trained for {} classes but the model has {}; build the model '
        'with n_class={} (or the matching --dataset)'.format(
            source, found, n_class, found))


def resolve_weights(n_layer, pretrained_model=None, n_class=None,
                    input_size=None, dataset=None, training=False):
    """Decide what model to build and what to load, for every caller: the
    link's constructor, the scripts and training.

    Args:
        n_layer (int): 50 or 101.
        pretrained_model (str or None): None (random weights), a dataset
            with published weights (``'cityscapes'``, ``'ade20k'``;
            downloaded once), ``'imagenet'`` (the extractor only), or the
            path of an npz file. With ``training``, also ``'none'`` (random)
            and extractor npz files.
        n_class (int or None): Classes the model must have; by default the
            dataset's, else the weights'.
        input_size (int, tuple of ints or None): By default the dataset's,
            else that of the dataset the weights were trained on (by preset
            or class count), else ``DEFAULT_INPUT_SIZE``.
        dataset (pspnet.datasets.spec.DatasetSpec or None): The
            dataset the model is for; it fixes the class count.
        training (bool): Weights to start training from: an extractor file
            loads into the extractor, and PSPNet weights of another class
            count load all but the classifier, which starts random.

    Returns:
        WeightPlan

    Raises:
        UserError: An unknown preset, a missing or unusable file, weights
        of another class count, no class count at all; the file header is
        read here, the arrays only by :meth:`WeightPlan.load_into`.
    """
    if dataset is not None:
        if n_class is not None and n_class != dataset.n_class:
            raise UserError('{} has {} classes, not {}; drop n_class or '
                            'use another dataset'.format(
                                dataset.name, dataset.n_class, n_class))
        n_class = dataset.n_class
    path = extractor_path = except_prefix = shapes = None
    weights_dataset = None
    presets = registry.weight_presets(n_layer)
    if pretrained_model is None or (training and pretrained_model == 'none'):
        description = 'none (random initialization)'
    elif pretrained_model == registry.EXTRACTOR_PRESET:
        extractor_path = download_model(registry.EXTRACTOR_WEIGHTS[n_layer])
        description = 'imagenet extractor ({})'.format(extractor_path)
    elif pretrained_model in registry.DATASETS:
        spec = registry.DATASETS[pretrained_model]
        if n_layer not in spec.weights:
            raise UserError(
                'no published {0} weights for ResNet{1}; pass an .npz file '
                '(convert a caffemodel with caffe2npz.py or train one with '
                'train_multi.py --dataset {0}) or one of {2}'.format(
                    spec.name, n_layer, ', '.join(presets)))
        weights_dataset = spec
        if n_class is not None and n_class != spec.n_class:
            if not training:
                raise _class_count_conflict(pretrained_model, spec.n_class,
                                            n_class, dataset, preset=True)
            except_prefix = CLASSIFIER_PREFIX
        path = download_model(spec.weights[n_layer])
        description = '{} weights ({})'.format(spec.name, path)
        if except_prefix:
            description = '{} weights without their {}-class classifier ' \
                '({})'.format(spec.name, spec.n_class, path)
        n_class = spec.n_class if n_class is None else n_class
    else:
        path = pretrained_model
        if not os.path.isfile(path):
            raise UserError(
                'weight file {!r} does not exist; pass an existing .npz file '
                'or one of {}'.format(path, ', '.join(
                    presets + (['none'] if training else []))))
        shapes = read_npz_shapes(path)
        if _EXTRACTOR_KEY in shapes:
            if not training:
                raise UserError(
                    '{} holds no classifier, only a ResNet extractor (like '
                    'the ImageNet weights); use it to start training '
                    '(train_multi.py --pretrained-model) or pass whole PSPNet '
                    'weights'.format(path))
            extractor_path, path = path, None
            description = 'extractor from {}'.format(extractor_path)
        elif _PSPNET_KEY not in shapes:
            raise UserError(
                '{} holds neither a ResNet extractor (conv1_1/conv/W, ...) '
                'nor a PSPNet (extractor/conv1_1/conv/W, ...); pass weights '
                'saved by this project or ChainerCV'.format(path))
        else:
            classifier = shapes.get(CLASSIFIER_PREFIX + 'W')
            if classifier is None:
                raise UserError(
                    '{} holds no classifier ({}W); it is not a complete '
                    'PSPNet weight file'.format(path, CLASSIFIER_PREFIX))
            found = classifier[0]
            weights_dataset = registry.dataset_of_n_class(found)
            description = 'whole PSPNet from {}'.format(path)
            if n_class is not None and n_class != found:
                if not training:
                    raise _class_count_conflict(path, found, n_class,
                                                dataset, preset=False)
                except_prefix = CLASSIFIER_PREFIX
                description = ('PSPNet without its {}-class classifier from '
                               '{}'.format(found, path))
            n_class = found if n_class is None else n_class
    if n_class is None:
        raise UserError('n_class must be given when the weights do not fix '
                        'it (pretrained_model={!r})'.format(pretrained_model))
    if weights_dataset is not None and weights_dataset.n_class != n_class:
        weights_dataset = None
    chosen = dataset or weights_dataset
    if input_size is None:
        input_size = (chosen.input_size if chosen is not None
                      else DEFAULT_INPUT_SIZE)
    return WeightPlan(n_layer, n_class, input_size, chosen, path,
                      extractor_path, except_prefix, shapes, description)
