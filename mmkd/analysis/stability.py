"""Stability of the learned concepts over training (Cheng et al., 2020)."""
import math
from typing import Sequence

import torch


def concept_stability(concepts_per_epoch: Sequence[torch.Tensor]) -> torch.Tensor:
    """``rho = |S_M| / |S_1 u ... u S_M|`` per image.

    ``S_j`` is the set of (foreground) concepts at epoch ``j``. ``rho = 1``
    when every concept met during training is still there at the end; a
    low ``rho`` means the network learned concepts and then dropped them:
    a detour.

    Args:
        concepts_per_epoch: (N, rows, cols) bool concept masks, one per
            epoch, in order.

    Returns:
        (N,) float; NaN for an image that never had a concept.

    Example:
        >>> a = torch.tensor([[True, False, False]])
        >>> b = torch.tensor([[False, True, False]])
        >>> concept_stability([a, b])
        tensor([0.5000])
    """
    if not len(concepts_per_epoch):
        raise ValueError('concept_stability needs the concepts of at least one epoch.')
    stacked = torch.stack([c.bool() for c in concepts_per_epoch])
    union = stacked.any(0).flatten(1).sum(1).float()
    final = stacked[-1].flatten(1).sum(1).float()
    return torch.where(union > 0, final / union.clamp_min(1), torch.full_like(union, math.nan))


def nanmean(values: torch.Tensor) -> float:
    """Mean of the non-NaN values; NaN if there are none."""
    values = torch.as_tensor(values, dtype=torch.float)
    kept = values[~torch.isnan(values)]
    return kept.mean().item() if kept.numel() else math.nan
