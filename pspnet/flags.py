"""Types of the scripts' command-line flags: the one way a flag is checked.

Each function is an argparse ``type``: it turns the text of a flag into
its value or raises ``argparse.ArgumentTypeError``, which
:class:`pspnet.errors.ArgumentParser` reports in one ``error:`` line
naming the flag (exit status 2).
"""

import argparse

from pspnet import precision
from pspnet.datasets import registry
from pspnet.errors import UserError
from pspnet.datasets.spec import MIN_INPUT_SIZE
from pspnet.training import class_weights


def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            'expected an integer, got {!r}'.format(text))


def positive_int(text):
    """An integer of at least 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(
            'expected a positive integer, got {!r}'.format(text))
    return value


def non_negative_int(text):
    """An integer of at least 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(
            'expected 0 or a positive integer, got {!r}'.format(text))
    return value


def positive_float(text):
    """A finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not 0 < value < float('inf'):
        raise argparse.ArgumentTypeError(
            'expected a positive number, got {!r}'.format(text))
    return value


def non_negative_float(text):
    """A finite number of at least 0."""
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not 0 <= value < float('inf'):
        raise argparse.ArgumentTypeError(
            'expected 0 or a positive number, got {!r}'.format(text))
    return value


def fraction(text):
    """A number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            'expected a fraction between 0 and 1, got {!r}'.format(text))
    return value


def input_size(text):
    """A network input or crop size: an integer of at least
    :data:`~pspnet.datasets.spec.MIN_INPUT_SIZE` (the presets use 713 and
    473)."""
    value = _integer(text)
    if value < MIN_INPUT_SIZE:
        raise argparse.ArgumentTypeError(
            '{} is too small; use at least {} (the presets use {})'.format(
                value, MIN_INPUT_SIZE, ' and '.join(sorted(
                    {str(spec.input_size)
                     for spec in registry.DATASETS.values()},
                    reverse=True))))
    return value


def scales(text):
    """Comma-separated positive scales, such as ``0.5,1.0,1.5``."""
    try:
        values = tuple(float(s) for s in text.split(','))
    except ValueError:
        values = ()
    if not values or not all(0 < v < float('inf') for v in values):
        raise argparse.ArgumentTypeError(
            'expected positive numbers separated by commas, such as '
            '0.5,0.75,1.0,1.25,1.5,1.75; got {!r}'.format(text))
    return values


def dataset(text):
    """The name of a dataset of :mod:`pspnet.datasets.registry`, or a
    dataset description ``PATH.json`` (read and checked here; its name is
    the file's absolute path)."""
    try:
        return registry.lookup(text).name
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e))


def training_dataset(text):
    """A dataset with a training recipe."""
    name = dataset(text)
    if registry.lookup(name).iterations is None:
        raise argparse.ArgumentTypeError(
            'no training recipe for dataset {!r}; use one of {}'.format(
                name, ', '.join(spec.name for spec in
                                registry.DATASETS.values()
                                if spec.iterations is not None)))
    return name


def dataset_names(training=False):
    """Names for a flag's help and metavar."""
    return '|'.join([spec.name for spec in registry.DATASETS.values()
                     if not training or spec.iterations is not None]
                    + ['PATH.json'])


def dataset_defaults(attribute, training=False):
    """A dataset fact per dataset for a flag's help, such as ``'713 for
    cityscapes, 473 for ade20k'``; datasets without it are left out."""
    return ', '.join(
        '{} for {}'.format(getattr(spec, attribute), spec.name)
        for spec in registry.DATASETS.values()
        if getattr(spec, attribute) is not None
        and (not training or spec.iterations is not None))


def class_weight(text):
    """``median`` or a file of class weights (a JSON list, or one number
    per line): ``'median'`` or a tuple of floats; their count is checked
    against the dataset later."""
    if text == class_weights.MEDIAN:
        return text
    try:
        return class_weights.read_class_weight_file(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e))


def add_prediction_arguments(parser):
    """Add ``--scales`` and ``--no-flip``, the prediction options that
    demo.py and eval_semantic_segmentation.py share, to a parser."""
    parser.add_argument('--scales', type=scales, metavar='S,S,...',
                        help='average the scores of the image scaled by '
                        'each, such as 0.5,0.75,1.0,1.25,1.5,1.75 (default: '
                        'its own scale only)')
    parser.add_argument('--no-flip', action='store_true',
                        help='do not average each window with its '
                        'horizontal flip (twice as fast)')


def add_inference_arguments(parser):
    """``--dtype float32|float16`` and ``--tf32`` of the inference scripts
    (demo.py, eval_semantic_segmentation.py)."""
    parser.add_argument('--dtype', choices=precision.INFERENCE_DTYPES,
                        default='float32',
                        help='float32 (default) or float16: float16 '
                        'convolutions, float32 batch normalization and '
                        'softmax (for GPUs; slow on the CPU)')
    parser.add_argument('--tf32', action='store_true',
                        help='let cuBLAS use TF32 for float32 matrix '
                        'products (GPUs of compute capability 8.0+)')
