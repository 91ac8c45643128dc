"""CIFAR-style ResNet-n (He et al. 2016, Sec. 4.2) and its x4-wide variants."""
from typing import Optional, Sequence

import torch
from torch import nn

from mmkd.registry import MODELS

from .base import StagedBackbone


class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU, 3x3 conv-BN, shortcut, ReLU.

    The same ``relu`` module is called twice (as in torchvision and
    mmpretrain): the input of its second call is the block's pre-ReLU output.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


@MODELS.register_module()
class CIFARResNet(StagedBackbone):
    """ResNet for 32x32 inputs: a 3x3 stem and three stages of basic blocks.

    ``depth = 6k + 2`` gives k blocks per stage. Widths (16, 16, 32, 64) give
    the ResNet-n of He et al.; (32, 64, 128, 256) give the ``x4`` nets of the
    CRD benchmark (ResNet8x4, ResNet32x4). Shortcuts change width with a
    1x1 conv + BN (option B). Parameter counts with a linear head:

    ==========  =======  ===========
    model       classes  parameters
    ==========  =======  ===========
    ResNet-8    10       0.078 M
    ResNet-20   10       0.27 M
    ResNet-56   10       0.86 M
    ResNet-110  10       1.7 M
    ResNet8x4   100      1.2 M
    ResNet32x4  100      7.4 M
    ==========  =======  ===========

    Args:
        depth: 8, 14, 20, 32, 44, 56, 110 or any 6k + 2.
        widths: Stem width then the three stage widths; or use ``arch``.
        arch: ``'cifar'`` (16, 16, 32, 64) or ``'x4'`` (32, 64, 128, 256).
        in_channels: Image channels (1 for Fashion-MNIST).
        out_indices, frozen_stages, norm_eval, init_cfg: see
            :class:`StagedBackbone`.

    Example:
        >>> net = CIFARResNet(depth=20, in_channels=1, out_indices=(0, 1, 2))
        >>> [tuple(o.shape) for o in net(torch.rand(2, 1, 28, 28))]
        [(2, 16, 28, 28), (2, 32, 14, 14), (2, 64, 7, 7)]
    """

    archs = {'cifar': (16, 16, 32, 64), 'x4': (32, 64, 128, 256)}
    num_stages = 3

    def __init__(self, depth: int = 20, arch: str = 'cifar',
                 widths: Optional[Sequence[int]] = None, in_channels: int = 3,
                 out_indices: Sequence[int] = (-1, ), frozen_stages: int = -1,
                 norm_eval: bool = False, init_cfg=None):
        super().__init__(out_indices, frozen_stages, norm_eval, init_cfg)
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f'CIFARResNet depth must be 6k + 2 (8, 14, 20, 32, 44, 56, 110); '
                             f'got {depth}.')
        if widths is None:
            if arch not in self.archs:
                raise ValueError(f'CIFARResNet arch {arch!r} is not one of {list(self.archs)}.')
            widths = self.archs[arch]
        if len(widths) != 4:
            raise ValueError(f'widths needs 4 numbers (stem + 3 stages); got {widths}.')
        self.depth = depth
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        in_ch = widths[0]
        for i, out_ch in enumerate(widths[1:]):
            stride = 1 if i == 0 else 2
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(in_ch, out_ch, stride if b == 0 else 1))
                in_ch = out_ch
            self.add_module(f'layer{i + 1}', nn.Sequential(*layers))
        self.out_channels = tuple(widths[1:])
        self._check_indices()
