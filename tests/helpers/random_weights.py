"""Random PSPNet weights and images that make comparisons sensitive.

Used by the tests and by the ChainerCV comparisons in ``crosscheck/``.
"""

import chainer
import chainer.functions as F
import numpy as np


def randomize_batch_normalization(link, rng):
    """Give every BatchNormalization under ``link`` a random scale, shift
    and running statistics, far from identities, so that mistakes in how
    they are applied (or folded) show."""
    for name, param in link.namedparams():
        if name.endswith('/gamma'):
            param.array[:] = rng.uniform(0.5, 1.5, param.shape)
        elif name.endswith('/beta'):
            param.array[:] = rng.uniform(-0.2, 0.2, param.shape)
    for _, child in link.namedlinks():
        if isinstance(child, chainer.links.BatchNormalization):
            child.avg_mean[:] = rng.uniform(-0.2, 0.2, child.avg_mean.shape)
            child.avg_var[:] = rng.uniform(0.5, 2, child.avg_var.shape)


def smooth_image(rng, size):
    """(3, H, W) float32 RGB in [0, 255]: smoothed noise, high contrast."""
    img = rng.uniform(0, 255, (3,) + tuple(size)).astype(np.float32)
    img = F.average_pooling_2d(img[None], 9, 1, 4).array[0]
    return np.clip((img - 127.5) * 4 + 127.5, 0, 255)


def sensitive_model(cls, n_class, size, rng):
    """A PSPNet whose labels change often across an image.

    Batch normalizations are randomized, the classifier is amplified (small
    feature differences flip the argmax) and its bias cancels each class's
    mean logit on a smooth random image, so that every class wins
    somewhere.

    Args:
        cls: ``PSPNetResNet50`` or ``PSPNetResNet101`` (this project's or
            ChainerCV's).
        n_class (int): Number of classes.
        size (int or tuple of ints): Input size.
        rng (numpy.random.RandomState): Source of randomness.
    """
    # Chainer's initializers draw from NumPy's global generator.
    np.random.seed(rng.randint(2 ** 31))
    model = cls(n_class, input_size=size)
    randomize_batch_normalization(model, rng)
    model.head_conv2.W.array *= 300
    size = model.input_size
    probe = smooth_image(rng, size)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        logits = model.forward(probe[None] - model.mean).array
    model.head_conv2.b.array[:] = -logits.mean(axis=(0, 2, 3))
    return model


def save_random_weights(path, n_class, input_size, seed=0):
    """Write a PSPNetResNet50 of Chainer's default initialization (seeded
    through NumPy's global generator, which the initializers use) to an
    uncompressed npz at ``path``; returns ``path`` as a string."""
    from pspnet import PSPNetResNet50
    np.random.seed(seed)
    model = PSPNetResNet50(n_class, input_size=input_size)
    chainer.serializers.save_npz(str(path), model, compression=False)
    return str(path)
