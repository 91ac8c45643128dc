"""1x1 conv + BN student transform (FitNets regressor, OFD connector)."""
import math

import torch
from torch import nn

from mmkd.registry import MODELS

from .base import BaseConnector


@MODELS.register_module()
class ConvBNConnector(BaseConnector):
    """Maps student features to the teacher's width: ``BN(W * x)``, W 1x1.

    Channels may be left out of the config: the distiller infers them
    from the ``input`` and ``like`` records.

    Args:
        in_channels: Student channels.
        out_channels: Teacher channels.
        kernel_size: 1 (OFD) or 3 (a FitNets-style regressor).
        with_bn: Follow the conv with BatchNorm.
        init_cfg: MMEngine init config; by default the conv gets He
            (fan-out) initialisation and BN weight 1, bias 0.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1,
                 with_bn: bool = True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2,
                              bias=not with_bn)
        self.bn = nn.BatchNorm2d(out_channels) if with_bn else nn.Identity()
        if init_cfg is None:
            fan_out = kernel_size * kernel_size * out_channels
            nn.init.normal_(self.conv.weight, 0, math.sqrt(2.0 / fan_out))
            if self.conv.bias is not None:
                nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f'ConvBNConnector takes (N, C, H, W) features; got shape '
                             f'{tuple(x.shape)}.')
        return self.bn(self.conv(x))
