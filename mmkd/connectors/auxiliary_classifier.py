"""A classifier on a shallow stage: bottleneck to the deepest feature's shape, pooling, fc."""
from typing import Optional, Tuple

import torch
from torch import nn

from mmkd.registry import MODELS

from .base import BaseConnector


@MODELS.register_module()
class AuxiliaryClassifier(BaseConnector):
    """Bottleneck + global average pooling + linear classifier.

    The bottleneck maps a shallow stage's feature (C_in, H, W) to the shape
    of the deepest feature (C_out, H', W'): ``num_downsamples`` 3x3 stride-2
    conv-BN-ReLU layers (the first one changes the width to ``out_channels``),
    or a 1x1 conv-BN-ReLU when no downsampling is needed. Used by
    :class:`~mmkd.distillers.SelfDistiller` (Be Your Own Teacher), which
    fills in every argument but ``init_cfg`` from its dry run.

    The BYOT paper (ICCV 2019, Sec. 3) gives each shallow classifier a
    bottleneck, a fully connected layer and a softmax, without fixing the
    bottleneck's layers; the authors' final code builds it from stride-2
    depthwise-separable convolutions (``SepConv``) behind an attention mask
    on each stage, which this class does not reproduce (see the fidelity
    page).

    Fidelity: docs/fidelity.md#byot

    Args:
        in_channels: Channels of the shallow feature.
        out_channels: Channels of the deepest feature.
        num_classes: Classes of the deepest classifier.
        num_downsamples: Stride-2 layers needed to reach the deepest
            feature's spatial size.
        init_cfg: MMEngine init config.

    Returns (forward):
        ``(feature, logits)``: the bottleneck's output (N, C_out, H', W')
        and the class scores (N, num_classes).

    Example:
        >>> head = AuxiliaryClassifier(16, 64, 10, num_downsamples=2)
        >>> feat, logits = head(torch.randn(2, 16, 28, 28))
        >>> feat.shape, logits.shape
        (torch.Size([2, 64, 7, 7]), torch.Size([2, 10]))
    """

    def __init__(self, in_channels: int, out_channels: int, num_classes: int,
                 num_downsamples: int = 0, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if num_downsamples < 0:
            raise ValueError(f'AuxiliaryClassifier num_downsamples must be >= 0; got '
                             f'{num_downsamples}.')
        layers = []
        if num_downsamples == 0:
            layers += [nn.Conv2d(in_channels, out_channels, 1, bias=False),
                       nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
        for i in range(num_downsamples):
            layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, 2, 1,
                                 bias=False),
                       nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
        self.bottleneck = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feature = self.bottleneck(x)
        return feature, self.fc(self.pool(feature).flatten(1))
