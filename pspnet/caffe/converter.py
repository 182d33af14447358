"""Converting PSPNet's caffemodels into npz weights for PSPNetResNet50/101.

:func:`convert_caffemodel` reads the file twice, layer by layer: once to
learn the network (depth, classes, input size) and check every blob's
shape, once to copy the values into a real :class:`PSPNetResNet50` or
:class:`PSPNetResNet101`, which is then saved with
``chainer.serializers.save_npz`` (the parameter tree ChainerCV's own
converter writes). Nothing is written unless every parameter of the model
was filled; the file appears atomically.
"""

import collections
import ctypes
import os

import chainer

from pspnet import atomic
from pspnet.caffe import layout
from pspnet.caffe import reader
from pspnet.datasets import registry
from pspnet.errors import UserError
from pspnet.links import PSPNetResNet101
from pspnet.links import PSPNetResNet50
from pspnet.training.train_chain import CAFFE_AUX_HEAD
from pspnet.training.train_chain import TrainChain

LINKS = {50: PSPNetResNet50, 101: PSPNetResNet101}

AUXILIARY = ('auxiliary training branch, not part of the inference model '
             '(--with-aux keeps it for fine-tuning)')
UNKNOWN = 'not a layer of PSPNet'


class _LeaveUnfilled(chainer.initializer.Initializer):
    """Leaves freshly allocated arrays as they are: the caffemodel fills
    them, and untouched pages cost no memory until then."""

    def __call__(self, array):
        pass


class ConversionReport(object):
    """What :func:`convert_caffemodel` did.

    Attributes:
        source, target (str): The caffemodel and the npz written.
        spec (pspnet.caffe.layout.ModelSpec): The network found.
        converted (collections.Counter): Layers copied, by kind
            (``'convolution'``, ``'batch normalization'``, ``'classifier'``).
        n_arrays (int): Link arrays filled.
        ignored (list of tuples): ``(name, type, reason)`` of every layer
            with parameters that was not converted.
        skipped (collections.Counter): Layers without parameters (ReLU,
            Pooling, Interp...), by type.
        with_aux (bool): The auxiliary branch was converted too.
    """

    def __init__(self, source, target, spec, with_aux=False):
        self.source = source
        self.target = target
        self.spec = spec
        self.with_aux = with_aux
        self.converted = collections.Counter()
        self.n_arrays = 0
        self.ignored = []
        self.skipped = collections.Counter()

    @property
    def model_name(self):
        return 'pspnet_resnet{}'.format(self.spec.n_layer)

    @property
    def dataset(self):
        """The name of the dataset whose class count the weights have, or
        None."""
        spec = registry.dataset_of_n_class(self.spec.n_class)
        return spec.name if spec is not None else None

    def lines(self):
        """The report as lines of text."""
        spec = self.spec
        out = ['{}: PSPNet ResNet{}, {} classes, trained at {}x{} (from {})'
               .format(self.source, spec.n_layer, spec.n_class,
                       spec.input_size[0], spec.input_size[1],
                       spec.input_from)]
        out.append('converted {} layers into {} arrays: {}'.format(
            sum(self.converted.values()), self.n_arrays, ', '.join(
                '{} {}'.format(self.converted[kind], kind)
                for kind in layout.KINDS if self.converted[kind])))
        for name, type_, reason in self.ignored:
            out.append('ignored {} ({}): {}'.format(name, type_, reason))
        if self.skipped:
            out.append('skipped {} layers without parameters ({})'.format(
                sum(self.skipped.values()), ', '.join(
                    '{} {}'.format(n, t)
                    for t, n in self.skipped.most_common())))
        out.append('wrote {} for PSPNetResNet{} (n_class={}, input_size={})'
                   .format(self.target, spec.n_layer, spec.n_class,
                           spec.input_size[0]))
        if self.with_aux:
            out.append(
                'with the auxiliary head ({}) as the training chain\'s {}; '
                'fine-tune from all its layers with: mpiexec -n N python3 '
                'train_multi.py --dataset {} --model {} --pretrained-model '
                '{}'.format(', '.join(layout.auxiliary_layers(spec.n_layer)),
                            ' and '.join(layout.AUX_LINKS),
                            self.dataset or 'DATASET', self.model_name,
                            self.target))
        flags = '--model {}{} --input-size {} --pretrained-model {}'.format(
            self.model_name,
            ' --dataset ' + self.dataset if self.dataset else '',
            spec.input_size[0], self.target)
        out.append('use it with: python demo.py {} IMAGE'.format(flags))
        return out


def _release_freed_memory():
    """Hand memory freed inside the heap back to the system (glibc only).

    Chainer allocates a NaN gradient for every parameter; the converter
    drops them at once, but most of that memory lies between other
    allocations and would otherwise still count as the process's memory
    while the weights are copied.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _link_arrays(model):
    """The arrays ``save_npz`` writes, by name, as the link's own arrays
    (the BN batch counters ``N`` left out: Caffe has none)."""
    arrays = {}
    model.serialize(chainer.serializers.DictionarySerializer(arrays))
    return {name: array for name, array in arrays.items()
            if not name.endswith('/N')}


def _check_layer(record, target, arrays, path):
    """Check a layer's type, blob count and blob shapes against the link."""
    expected_types = layout.BN_TYPES if target.kind == 'batch normalization' \
        else layout.CONVOLUTION_TYPES
    if record.type not in expected_types:
        raise UserError(
            '{}: layer {} is of type {}, but PSPNet\'s is a {} ({}); it is '
            'not one of PSPNet\'s models'.format(
                path, record.name, record.type, target.kind,
                ' or '.join(expected_types)))
    n_blob, n_array = len(record.blob_shapes), len(target.arrays)
    if n_blob != n_array:
        if target.kind == 'convolution' and n_blob == 2:
            problem = 'a bias, which PSPNet\'s {} has not'.format(record.name)
        elif target.kind == 'classifier' and n_blob == 1:
            problem = 'no bias, which PSPNet\'s {} has'.format(record.name)
        else:
            problem = '{} blobs, PSPNet\'s has {}'.format(n_blob, n_array)
        raise UserError('{}: layer {} has {}; it is not one of PSPNet\'s '
                        'models'.format(path, record.name, problem))
    for i, (shape, name) in enumerate(zip(record.blob_shapes,
                                          target.arrays)):
        if not layout.blob_fits(shape, arrays[name].shape):
            raise UserError(
                '{}: blob {} of layer {} has shape {}, but {} of the model '
                'needs {}; the file is damaged or not one of PSPNet\'s models'
                .format(path, i, record.name, shape, name,
                        arrays[name].shape))


def plan_conversion(records, spec, arrays, path, report, with_aux=False):
    """Match layers to link arrays and check them, before reading values.

    With ``with_aux``, ``arrays`` also holds the auxiliary head's
    (:func:`pspnet.caffe.layout.auxiliary_targets`), which the file must
    fill too.

    Returns:
        list: ``(record, target)`` of every layer to copy, in file order.

    Raises:
        UserError: A layer does not fit, a layer appears twice, or some
        link arrays would stay unfilled.
    """
    targets = layout.targets(spec.n_layer)
    auxiliary = set(layout.auxiliary_layers(spec.n_layer))
    if with_aux:
        present = {layout.canonical_name(r.name) for r in records
                   if r.blob_shapes}
        missing = [name for name in layout.auxiliary_layers(spec.n_layer)
                   if name not in present]
        if missing:
            layers = ', '.join(layout.auxiliary_layers(spec.n_layer))
            problem = ('holds no auxiliary branch ({})'.format(layers)
                       if len(missing) == len(auxiliary) else
                       'lacks {} of the auxiliary branch ({})'.format(
                           ', '.join(missing), layers))
            raise UserError(
                '{} {}; convert it without --with-aux (fine-tuning then '
                'starts the auxiliary head random)'.format(path, problem))
        targets.update(layout.auxiliary_targets(spec.n_layer))
    plan, seen = [], set()
    for record in records:
        name = layout.canonical_name(record.name)
        if not record.blob_shapes:
            report.skipped[record.type or '(no type)'] += 1
            continue
        if name not in targets:
            report.ignored.append((record.name, record.type,
                                   AUXILIARY if name in auxiliary
                                   else UNKNOWN))
            continue
        if name in seen:
            raise UserError('{}: layer {} appears twice; it is not one of '
                            'PSPNet\'s models'.format(path, record.name))
        seen.add(name)
        target = targets[name]
        _check_layer(record, target, arrays, path)
        plan.append((record, target))
    filled = {a for _, target in plan for a in target.arrays}
    owner = collections.OrderedDict(
        (a, layer) for layer, t in targets.items() for a in t.arrays)
    # In network order; arrays no layer maps to (none with a consistent
    # layout) last.
    missing = [a for a in owner if a in arrays and a not in filled] + \
        sorted(a for a in arrays if a not in owner)
    if missing:
        raise UserError(
            '{} leaves {} of the {} arrays of PSPNetResNet{} unfilled: {}; '
            'the file is incomplete, download it again'.format(
                path, len(missing), len(arrays), spec.n_layer, ', '.join(
                    '{} (layer {})'.format(a, owner.get(a, '?'))
                    for a in missing)))
    return plan


def _copy_blobs(layer, target, arrays, path):
    for i, name in enumerate(target.arrays):
        try:
            values = reader.blob_array(layer.blobs[i])
        except ValueError as e:
            raise UserError('{}: blob {} of layer {} {}; the file is damaged,'
                            ' download it again'.format(path, i, layer.name,
                                                        e))
        array = arrays[name]
        values = values.reshape(array.shape)
        if target.reverse_channels:
            values = values[:, ::-1]
        array[...] = values
        del values


def _save_npz_atomically(model, target, compress):
    try:
        atomic.save_npz_atomic(target, model, compression=compress)
    except OSError as e:
        raise atomic.write_error(target, e)


def check_paths(source, target):
    """Check, before any reading, that ``target`` can be written and is not
    ``source`` (a conversion must never replace its caffemodel).

    Raises:
        UserError: One line naming the problem and the fix.
    """
    if os.path.exists(source) and (
            os.path.realpath(source) == os.path.realpath(target)
            or os.path.exists(target) and os.path.samefile(source, target)):
        raise UserError('{} and {} are the same file; the npz would replace '
                        'the caffemodel: give another TARGET'.format(
                            source, target))
    atomic.check_target(target, '.npz file')


def _serialized(link, prefix=''):
    """What ``save_npz`` writes for ``link``, names under ``prefix``."""
    arrays = {}
    link.serialize(chainer.serializers.DictionarySerializer(arrays))
    return {prefix + name: array for name, array in arrays.items()}


def convert_caffemodel(source, target, compress=False,
                       default_input_sizes=None, with_aux=False):
    """Convert one of PSPNet's caffemodels into an npz file.

    Args:
        source (str): ``pspnet50_ADE20K.caffemodel``,
            ``pspnet101_VOC2012.caffemodel`` or
            ``pspnet101_cityscapes.caffemodel`` (or another PSPNet model
            with the same layer names).
        target (str): The npz file to write (replaced if it exists).
        compress (bool): Deflate the npz (a few percent smaller, much
            slower).
        default_input_sizes (dict): Class count to (height, width), for a
            file without pyramid pooling layers; by default the input size
            of the registry's dataset with that class count.
        with_aux (bool): Also convert the auxiliary training branch
            (``conv4_{n+1}``, ``conv4_{n+1}/bn``, ``conv6_1``) into the
            arrays of the training chain's auxiliary head (``aux_conv1/...``,
            ``aux_conv2/...``, see
            :class:`pspnet.training.train_chain.TrainChain` with
            ``CAFFE_AUX_HEAD``), written beside the model's: the file loads
            whole into ``train_multi.py --pretrained-model``, and into the
            inference models as before (they skip those arrays).

    Returns:
        ConversionReport

    Raises:
        UserError: The file is missing, truncated, corrupt, not a PSPNet
        model, or does not fill the model (with ``with_aux``, also the
        auxiliary head); nothing is written then.
    """
    check_paths(source, target)
    if default_input_sizes is None:
        default_input_sizes = {
            spec.n_class: (spec.input_size,) * 2
            for spec in registry.DATASETS.values()}
    records = reader.index_layers(source)
    spec = layout.infer_model(records, source, default_input_sizes)
    model = LINKS[spec.n_layer](spec.n_class, input_size=spec.input_size,
                                initialW=_LeaveUnfilled())
    model.cleargrads()  # Chainer allocates NaN gradients; none are needed
    aux = None
    if with_aux:
        channels, ksize = CAFFE_AUX_HEAD
        aux = TrainChain(model, initialW=_LeaveUnfilled(),
                         aux_channels=channels, aux_ksize=ksize)
        aux.cleargrads()
    _release_freed_memory()
    arrays = _link_arrays(model)
    if aux is not None:
        for name in layout.AUX_LINKS:
            arrays.update({key: array for key, array in _serialized(
                getattr(aux, name), name + '/').items()
                if not key.endswith('/N')})
    report = ConversionReport(source, target, spec, with_aux)
    plan = plan_conversion(records, spec, arrays, source, report, with_aux)

    # Largest layers first: a layer's values are briefly held twice while
    # it is copied, and that costs least while the model is still empty.
    plan.sort(key=lambda item: -item[0].size)
    with open(source, 'rb') as f:
        for record, target_ in plan:
            layer = reader.read_layer(f, record, source)
            _copy_blobs(layer, target_, arrays, source)
            del layer
            report.converted[target_.kind] += 1
            report.n_arrays += len(target_.arrays)
    if aux is not None:
        # The model's arrays, then the auxiliary head's, as one npz.
        saved = _serialized(model)
        for name in layout.AUX_LINKS:
            saved.update(_serialized(getattr(aux, name), name + '/'))
        _save_npz_atomically(saved, target, compress)
    else:
        _save_npz_atomically(model, target, compress)
    return report
