"""Wide residual networks WRN-d-w (Zagoruyko & Komodakis, BMVC 2016)."""
from typing import Sequence

import torch
from torch import nn

from mmkd.registry import MODELS

from .base import StagedBackbone


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3 twice, with a 1x1 conv shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, drop_rate: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.drop_rate = drop_rate
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(act)
        out = self.relu2(self.bn2(self.conv1(act)))
        if self.drop_rate > 0:
            out = nn.functional.dropout(out, p=self.drop_rate, training=self.training)
        return self.conv2(out) + identity


@MODELS.register_module()
class WideResNet(StagedBackbone):
    """WRN-d-w: ``(d - 4) / 6`` pre-activation blocks per stage, widths
    16w, 32w, 64w, and a final BN-ReLU on the last stage.

    Parameter counts with a linear head: WRN-16-2 0.70 M, WRN-40-2 2.2 M
    (100 classes).

    Args:
        depth: 6k + 4 (16, 28, 40, ...).
        widen_factor: Width multiplier w.
        in_channels: Image channels.
        drop_rate: Dropout between the two convs of a block.
        out_indices, frozen_stages, norm_eval, init_cfg: see
            :class:`StagedBackbone`.
    """

    num_stages = 3

    def __init__(self, depth: int = 40, widen_factor: int = 2, in_channels: int = 3,
                 drop_rate: float = 0.0, out_indices: Sequence[int] = (-1, ),
                 frozen_stages: int = -1, norm_eval: bool = False, init_cfg=None):
        super().__init__(out_indices, frozen_stages, norm_eval, init_cfg)
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f'WideResNet depth must be 6k + 4 (16, 28, 40, ...); got {depth}.')
        self.depth = depth
        self.widen_factor = widen_factor
        blocks = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        in_ch = widths[0]
        for i, out_ch in enumerate(widths[1:]):
            stride = 1 if i == 0 else 2
            layers = []
            for b in range(blocks):
                layers.append(PreActBlock(in_ch, out_ch, stride if b == 0 else 1, drop_rate))
                in_ch = out_ch
            self.add_module(f'layer{i + 1}', nn.Sequential(*layers))
        self.final_bn = nn.BatchNorm2d(in_ch)
        self.final_relu = nn.ReLU(inplace=True)
        self.out_channels = tuple(widths[1:])
        self._check_indices()

    def head_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_relu(self.final_bn(x))
