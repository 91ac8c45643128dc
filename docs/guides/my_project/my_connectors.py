"""A connector of your own: a learnable transform of a student record."""
from typing import Optional

import torch
from torch import nn

from mmkd.connectors import BaseConnector
from mmkd.registry import MODELS


@MODELS.register_module()
class MLPConnector(BaseConnector):
    """Two 1x1 convolutions with BN and ReLU between them: student width -> teacher width.

    ``in_channels`` and ``out_channels`` may be left out of the config: the distiller reads
    them from the dry run's ``input`` and ``like`` records (:meth:`BaseConnector.infer_config`).

    Args:
        in_channels: Channels of the student record.
        out_channels: Channels of the teacher record.
        hidden_channels: Width between the two convolutions; ``out_channels`` by default.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 hidden_channels: Optional[int] = None, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        hidden = hidden_channels or out_channels
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True), nn.Conv2d(hidden, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:  # the build-time dry run calls forward: say what is wrong there
            raise ValueError(f'MLPConnector takes (N, C, H, W) features; got shape '
                             f'{tuple(x.shape)}.')
        return self.layers(x)
