"""Linear student transform for (N, C) values (embeddings, pooled features)."""
import torch
from torch import nn

from mmkd.registry import MODELS

from .base import BaseConnector


@MODELS.register_module()
class LinearConnector(BaseConnector):
    """Maps an (N, C_s) student value to the teacher's width: ``W x + b``.

    The (N, C) counterpart of :class:`ConvBNConnector`, e.g. for the pooled
    embeddings that RKD, PKT or CRD compare. Widths are inferred from the
    ``input`` and ``like`` records. Not for logits: nets that predict
    different classes cannot be compared class by class.

    Args:
        in_channels: Student width.
        out_channels: Teacher width.
        bias: Learn a bias.
        init_cfg: MMEngine init config (PyTorch's default init otherwise).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.fc = nn.Linear(in_channels, out_channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f'LinearConnector takes (N, C) values; got shape '
                             f'{tuple(x.shape)}. For (N, C, H, W) features use '
                             'ConvBNConnector.')
        return self.fc(x)
