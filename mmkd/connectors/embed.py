"""Linear embedding head with L2 normalisation (CRD's ``Embed``)."""
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmkd.registry import MODELS

from .base import BaseConnector, ConnectorConfigError, RecordFacts


@MODELS.register_module()
class EmbedConnector(BaseConnector):
    r"""Flattens a value, maps it linearly to ``out_channels`` and L2-normalises:
    :math:`e = W x + b, \; e / \|e\|_2`.

    The embedding head of contrastive distillation (CRD), one per net: on
    the student's pooled feature and on the teacher's. Both are trained
    (the teacher's head too: its gradient comes from the teacher-anchored
    half of :class:`~mmkd.losses.CRDLoss`), both live in the distiller's
    checkpoints and neither is part of the exported student.
    ``in_channels`` is inferred from the ``input`` record (the size of one
    flattened sample).

    Args:
        in_channels: Size of one flattened input sample.
        out_channels: Embedding size (CRD's ``feat_dim``, 128).
        normalize: L2-normalise the output.
        init_cfg: MMEngine init config (PyTorch's default ``nn.Linear`` init
            otherwise, as the authors').
    """

    def __init__(self, in_channels: int, out_channels: int = 128, normalize: bool = True,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.fc = nn.Linear(in_channels, out_channels)
        self.normalize = normalize

    @classmethod
    def infer_config(cls, cfg: dict, source: Any, like: Any = None,
                     facts: RecordFacts = RecordFacts()) -> dict:
        if 'in_channels' not in cfg:
            if not isinstance(source, torch.Tensor) or source.dim() < 2:
                raise ConnectorConfigError(
                    'EmbedConnector takes one (N, ...) tensor; got '
                    f'{type(source).__name__}.')
            cfg['in_channels'] = source[0].numel()
        return cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x.flatten(1))
        return F.normalize(x, p=2, dim=1) if self.normalize else x
