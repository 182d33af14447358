"""Building a PSPNet for inference from the scripts' options."""

from pspnet import pretrained
from pspnet.datasets import registry
from pspnet.errors import UserError
from pspnet.links import PSPNetResNet101
from pspnet.links import PSPNetResNet50

MODELS = {
    'pspnet_resnet50': PSPNetResNet50,
    'pspnet_resnet101': PSPNetResNet101,
}


def model_class(model):
    """The link class of a ``--model`` name."""
    if model not in MODELS:
        raise UserError('unknown model {!r}; choose one of {}'.format(
            model, ', '.join(sorted(MODELS))))
    return MODELS[model]


def build_model(model='pspnet_resnet101', dataset=None, pretrained_model=None,
                input_size=None):
    """Build a PSPNet for inference from the scripts' options.

    Args:
        model (str): ``'pspnet_resnet50'`` or ``'pspnet_resnet101'``.
        dataset (str, pspnet.datasets.spec.DatasetSpec or None): The
            dataset of the model's classes (``--dataset``); it fixes the
            class count and the default weights.
        pretrained_model (str or None): A preset (``'cityscapes'``,
            ``'ade20k'``), an npz path, or None for the dataset's published
            weights.
        input_size (int or None): Network input size; by default the
            dataset's, else that of the dataset the weights were trained on,
            else 713 (:func:`pspnet.pretrained.resolve_weights`).

    Returns:
        PSPNet: The model, weights loaded. Its ``dataset`` attribute is the
        :class:`~pspnet.datasets.spec.DatasetSpec` of its classes (the
        one given, else the one of the weights), or None when no dataset
        has its class count; ``weights_path`` is the npz file loaded.

    Raises:
        UserError: Unknown names, no weights for the dataset, weights whose
        class count contradicts the dataset, unusable weight files.
    """
    cls = model_class(model)
    spec = registry.lookup(dataset) if dataset is not None else None
    if pretrained_model is None:
        spec = spec or registry.lookup('cityscapes')
        if cls.n_layer not in spec.weights and spec.name.endswith('.json'):
            raise UserError(
                'a described dataset ({}) has no published weights; pass '
                '--pretrained-model FILE.npz, such as the model_final.npz '
                'of train_multi.py --dataset {}'.format(spec.name, spec.name))
        if cls.n_layer not in spec.weights:
            raise UserError(
                'no published {0} weights; convert a caffemodel with '
                'caffe2npz.py (pspnet101_VOC2012.caffemodel for voc) or train '
                'them (mpiexec -n N python3 train_multi.py --dataset {0}), '
                'then pass --pretrained-model FILE.npz'.format(spec.name))
        pretrained_model = spec.name
    if pretrained_model == registry.EXTRACTOR_PRESET:
        raise UserError('the imagenet weights hold no classifier; pass '
                        '{} or a trained .npz file'.format(', '.join(
                            registry.weight_presets(cls.n_layer)[:-1])))
    plan = pretrained.resolve_weights(cls.n_layer, pretrained_model,
                                      input_size=input_size, dataset=spec)
    link = cls(pretrained_model=plan)
    link.dataset = plan.dataset
    link.weights_path = plan.path
    return link
