"""What a dataset is: :class:`DatasetSpec`, and the sizes every dataset is
checked against.

A leaf of the datasets: the registry (:mod:`pspnet.datasets.registry`)
holds the presets as DatasetSpecs, a user's description
(:mod:`pspnet.datasets.description`) is read into one.
"""

import collections

#: The smallest network input (and training crop) size: res5, 1/8 of the
#: input, has room for the pyramid's finest bins (6 x 6,
#: :data:`pspnet.links.pspnet.PYRAMID_BINS`).
MIN_INPUT_SIZE = 48

#: Input size of a model whose dataset is unknown (random weights, an
#: ImageNet extractor, weights of an unknown class count).
DEFAULT_INPUT_SIZE = 713

class DatasetSpec(collections.namedtuple('DatasetSpec', (
        'name', 'label_names', 'label_colors', 'reader', 'input_size',
        'iterations', 'weights', 'train_split', 'benchmark', 'test_split'),
        defaults=('train', None, None))):
    """The facts of one dataset.

    Attributes:
        name (str): The name of ``--dataset``.
        label_names (tuple of str): Class names in class-id order; the class
            count is their number.
        label_colors (tuple): (R, G, B) colour of each class, ints in
            [0, 255].
        reader (callable): ``reader(split, data_dir)`` returns the split as
            a :class:`pspnet.datasets.SegmentationDataset` (items
            ``(img, label)``, label -1 where ignored); training reads
            ``train_split``, evaluation ``'val'``.
        input_size (int): Network input size (square) PSPNet uses for the
            dataset, at inference and as training crop.
        iterations (int or None): Iterations of the published training
            recipe (batch 16); None where the project has no recipe.
        weights (dict): Depth (50, 101) to the URL of published PSPNet
            weights for the dataset; depths without are missing.
        train_split (str): The split training reads (``'train'``;
            ``'train_aug'`` for VOC).
        benchmark (str or None): Whose prediction files and official
            scores evaluation gives (``'cityscapes'``, ``'ade20k'``,
            ``'voc'``, :mod:`pspnet.evaluations.prediction_files`); None:
            class-index PNGs and ChainerCV's figures only.
        test_split (str or None): The split of the benchmark's test
            images, released without labels.
    """

    __slots__ = ()

    @property
    def n_class(self):
        return len(self.label_names)

    def get(self, split, data_dir='auto'):
        """The ``split`` of the dataset read from ``data_dir`` (the reader
        names the splits it has when it has no ``split``)."""
        return self.reader(split, data_dir)
