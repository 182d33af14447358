"""Building a PSPNet from the scripts' command-line choices."""

import os

from pspnet import pretrained as _pretrained
from pspnet.errors import UserError
from pspnet.links import PSPNetResNet101
from pspnet.links import PSPNetResNet50

MODELS = {
    'pspnet_resnet50': PSPNetResNet50,
    'pspnet_resnet101': PSPNetResNet101,
}

#: What each dataset fixes: class count, the input size PSPNet was trained
#: at, and the published weights (None where ChainerCV published none).
DATASET_PRESETS = {
    'cityscapes': {'n_class': 19, 'input_size': (713, 713),
                   'pretrained_model': 'cityscapes'},
    'ade20k': {'n_class': 150, 'input_size': (473, 473),
               'pretrained_model': 'ade20k'},
    'voc': {'n_class': 21, 'input_size': (473, 473),
            'pretrained_model': None},
}


def dataset_of_n_class(n_class):
    """The dataset whose class count is ``n_class``, or None."""
    for name, preset in DATASET_PRESETS.items():
        if preset['n_class'] == n_class:
            return name
    return None


def build_model(model='pspnet_resnet101', dataset=None, pretrained_model=None,
                input_size=None):
    """Build a PSPNet for inference from the scripts' options.

    Args:
        model (str): ``'pspnet_resnet50'`` or ``'pspnet_resnet101'``.
        dataset (str or None): ``'cityscapes'``, ``'ade20k'``, ``'voc'`` or
            None. It fixes the class count and the default weights.
        pretrained_model (str or None): A preset (``'cityscapes'``,
            ``'ade20k'``), an npz path, or None for the dataset's preset.
        input_size (int or None): Network input size; by default the
            dataset's, else the one the weights were trained at (713 for 19
            classes, 473 for 150 or 21), else 713.

    Returns:
        PSPNet: The model, weights loaded.

    Raises:
        UserError: Unknown names, no weights for the dataset, weights whose
        class count contradicts the dataset, unusable weight files.
    """
    if model not in MODELS:
        raise UserError('unknown model {!r}; choose one of {}'.format(
            model, ', '.join(sorted(MODELS))))
    if dataset is not None and dataset not in DATASET_PRESETS:
        raise UserError('unknown dataset {!r}; choose one of {}'.format(
            dataset, ', '.join(sorted(DATASET_PRESETS))))
    preset = DATASET_PRESETS.get(dataset, {})
    if pretrained_model is None:
        pretrained_model = preset.get('pretrained_model')
        if pretrained_model is None:
            raise UserError(
                'no published {} weights; convert '
                'pspnet101_VOC2012.caffemodel with caffe2npz.py or train a '
                'model, then pass '
                '--pretrained-model FILE.npz'.format(dataset or 'default'))
    presets = _pretrained.PRESETS[MODELS[model]._n_layer]
    if pretrained_model in presets:
        if pretrained_model == 'imagenet':
            raise UserError('the imagenet weights hold no classifier; pass '
                            'cityscapes, ade20k or a trained .npz file')
        n_class = presets[pretrained_model]['param']['n_class']
    else:
        if not os.path.isfile(pretrained_model):
            raise UserError(
                'weight file {!r} does not exist; pass an existing .npz file '
                'or one of cityscapes, ade20k'.format(pretrained_model))
        n_class = _pretrained.n_class_of(pretrained_model)
    if preset and n_class != preset['n_class']:
        raise UserError(
            'the weights {!r} have {} classes but {} has {}; pass weights '
            'trained on {}'.format(pretrained_model, n_class, dataset,
                                   preset['n_class'], dataset))
    if input_size is None:
        weights_dataset = dataset or dataset_of_n_class(n_class)
        input_size = DATASET_PRESETS.get(
            weights_dataset, {}).get('input_size', (713, 713))
    return MODELS[model](n_class=n_class, pretrained_model=pretrained_model,
                         input_size=input_size)
