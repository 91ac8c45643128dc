"""Connector that changes nothing."""
import torch

from mmkd.registry import MODELS

from .base import BaseConnector


@MODELS.register_module()
class IdentityConnector(BaseConnector):
    """Returns its input; a placeholder that keeps configs symmetric."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
