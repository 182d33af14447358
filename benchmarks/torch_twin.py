"""A PyTorch twin of the project's PSPNet, for benchmark comparisons only.

It builds the same network (dilated ResNet, pyramid pooling, head) with
``torch.nn`` modules and loads the weights from an npz file saved by
``chainer.serializers.save_npz`` from :class:`pspnet.PSPNet`. It is not
part of the package and not a dependency: ``bench_inference.py`` runs it
with a Python that has ``torch`` (``--torch-python``).
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_STAGES = (  # name, stride of the first unit, dilation
    ('res2', 1, 1), ('res3', 2, 1), ('res4', 1, 2), ('res5', 1, 4))
_BN_EPS = 2e-5  # Chainer's default


class ConvBN(nn.Module):
    def __init__(self, weights, prefix, stride=1, pad=0, dilate=1,
                 relu=True):
        super().__init__()
        W = weights[prefix + '/conv/W']
        out_channels, in_channels, ksize, _ = W.shape
        self.conv = nn.Conv2d(in_channels, out_channels, ksize, stride, pad,
                              dilate, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=_BN_EPS)
        self.relu = relu
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(W))
            for name, key in (('weight', 'gamma'), ('bias', 'beta'),
                              ('running_mean', 'avg_mean'),
                              ('running_var', 'avg_var')):
                getattr(self.bn, name).copy_(torch.from_numpy(
                    weights['{}/bn/{}'.format(prefix, key)]))

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x, inplace=True) if self.relu else x


class Bottleneck(nn.Module):
    def __init__(self, weights, prefix, stride, dilate):
        super().__init__()
        self.conv1 = ConvBN(weights, prefix + '/conv1')
        self.conv2 = ConvBN(weights, prefix + '/conv2', stride, dilate, dilate)
        self.conv3 = ConvBN(weights, prefix + '/conv3', relu=False)
        self.residual = None
        if prefix + '/residual_conv/conv/W' in weights:
            self.residual = ConvBN(weights, prefix + '/residual_conv', stride,
                                   relu=False)

    def forward(self, x):
        h = self.conv3(self.conv2(self.conv1(x)))
        h += x if self.residual is None else self.residual(x)
        return F.relu(h, inplace=True)


class PSPNetTwin(nn.Module):
    """PSPNet from npz weights; ``forward(x)`` gives logits at input size.

    Args:
        weights (dict): Arrays of the npz file, by name.
        input_size (tuple of ints): The model's input size; it sizes the
            pyramid's pooling windows, as in :class:`pspnet.PSPNet`.
    """

    def __init__(self, weights, input_size, bins=(6, 3, 2, 1)):
        super().__init__()
        self.stem = nn.Sequential(
            ConvBN(weights, 'extractor/conv1_1', 2, 1),
            ConvBN(weights, 'extractor/conv1_2', 1, 1),
            ConvBN(weights, 'extractor/conv1_3', 1, 1))
        units = []
        for stage, stride, dilate in _STAGES:
            names = sorted({key.split('/')[2] for key in weights
                            if key.startswith('extractor/{}/'.format(stage))},
                           key=lambda name: (name != 'a', len(name), name))
            for i, name in enumerate(names):
                units.append(Bottleneck(
                    weights, 'extractor/{}/{}'.format(stage, name),
                    stride if i == 0 else 1, dilate))
        self.units = nn.Sequential(*units)
        self.branches = nn.ModuleList(
            ConvBN(weights, 'ppm/{}'.format(i)) for i in range(len(bins)))
        feat = (input_size[0] // 8, input_size[1] // 8)
        self.ksizes = [(feat[0] // b, feat[1] // b) for b in bins]
        self.head1 = ConvBN(weights, 'head_conv1', 1, 1)
        W = weights['head_conv2/W']
        self.head2 = nn.Conv2d(W.shape[1], W.shape[0], 1)
        with torch.no_grad():
            self.head2.weight.copy_(torch.from_numpy(W))
            self.head2.bias.copy_(torch.from_numpy(weights['head_conv2/b']))
        self.eval()

    def forward(self, x):
        size = x.shape[2:]
        h = self.stem(x)
        # ceil_mode matches Chainer's cover_all=True (713 -> 357 -> 179).
        h = F.max_pool2d(h, 3, 2, 1, ceil_mode=True)
        h = self.units(h)
        feat = h.shape[2:]
        ys = [h]
        for branch, ksize in zip(self.branches, self.ksizes):
            y = branch(F.avg_pool2d(h, ksize, ksize))
            ys.append(F.interpolate(y, size=feat, mode='bilinear',
                                    align_corners=True))
        h = self.head2(self.head1(torch.cat(ys, dim=1)))
        return F.interpolate(h, size=size, mode='bilinear',
                             align_corners=True)


def load(path, input_size):
    """The twin of the model saved at ``path`` (npz)."""
    with np.load(path) as npz:
        weights = {key: npz[key] for key in npz.files}
    return PSPNetTwin(weights, input_size)


def export_onnx(npz_path, input_size, onnx_path):
    """Export the twin of the model at ``npz_path`` to ONNX (opset 17, the
    TorchScript exporter, batch 1 at ``input_size``), for ONNX Runtime and
    OpenVINO to run the same network on the same weights."""
    model = load(npz_path, input_size)
    x = torch.zeros((1, 3) + tuple(input_size))
    with torch.no_grad():
        torch.onnx.export(model, (x,), onnx_path, input_names=['x'],
                          output_names=['logits'], opset_version=17,
                          dynamo=False)
