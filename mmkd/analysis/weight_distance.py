"""How far, and how directly, training moved the weights (Cheng et al., 2020)."""
import math
from typing import Iterable, List, Sequence, Tuple

import torch
from torch import nn


def flat_weights(model: nn.Module, prefix: str = '') -> torch.Tensor:
    """The parameters whose names start with ``prefix``, as one CPU vector.

    Args:
        model: The network.
        prefix: Name prefix, e.g. ``'backbone'``; ``''`` takes them all.

    Returns:
        A detached float vector (a copy).
    """
    chosen = [p.detach().reshape(-1).float().cpu() for name, p in model.named_parameters()
              if name == prefix or name.startswith(f'{prefix}.') or not prefix]
    if not chosen:
        names = sorted({name.split('.')[0] for name, _ in model.named_parameters()})
        raise ValueError(f'{type(model).__name__} has no parameters under {prefix!r}; its '
                         f'top-level parameter prefixes are {names}.')
    return torch.cat(chosen).clone()


def accumulated_distances(weights: Sequence[torch.Tensor]) -> List[float]:
    """``D_k = sum_{j=1..k} ||w_j - w_{j-1}|| / ||w_0||`` for k = 0..K.

    The length of the path the weights took, relative to their initial
    norm: a straight path gives ``||w_k - w_0|| / ||w_0||``, a detour more.

    Args:
        weights: ``w_0, w_1, ..., w_K`` (flat vectors, e.g. from
            :func:`flat_weights` at each epoch).

    Returns:
        ``[D_0 = 0, D_1, ..., D_K]``.

    Example:
        >>> w = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])]
        >>> accumulated_distances(w)
        [0.0, 1.0, 2.0]
    """
    if not weights:
        return []
    norm = weights[0].norm().item()
    if norm == 0:
        raise ValueError('||w_0|| is 0: the distance is relative to the initial weights, '
                         'choose parameters that do not start at zero.')
    total, out = 0.0, [0.0]
    for prev, cur in zip(weights[:-1], weights[1:]):
        total += (cur - prev).norm().item() / norm
        out.append(total)
    return out


class WeightPath:
    """Accumulates ``D_k`` epoch by epoch without keeping every ``w_k``.

    Args:
        initial: ``w_0``.

    Example:
        >>> path = WeightPath(torch.tensor([3.0, 4.0]))
        >>> path.step(torch.tensor([3.0, 9.0]))
        1.0
    """

    def __init__(self, initial: torch.Tensor):
        self.norm = initial.norm().item()
        if self.norm == 0:
            raise ValueError('||w_0|| is 0: choose parameters that do not start at zero.')
        self.last = initial.clone()
        self.distances = [0.0]

    def step(self, weights: torch.Tensor) -> float:
        """Add ``||w_k - w_{k-1}|| / ||w_0||``; returns ``D_k``."""
        self.distances.append(self.distances[-1] + (weights - self.last).norm().item() / self.norm)
        self.last = weights.clone()
        return self.distances[-1]


def distance_at_peak(distances: Sequence[float],
                     n_fg_per_epoch: Iterable[Sequence[float]]) -> Tuple[float, float, List[int]]:
    """``D_mean`` and ``D_std``: the weight distance when each image's
    foreground concepts peak.

    For image ``I``, ``m(I) = argmax_k N_fg(I, k)`` (the first epoch on a
    tie); ``D_mean = E_I[D_m(I)]`` and ``D_std = (Var_I[D_m(I)])^(1/2)``.
    A small ``D_mean`` means the concepts were learned early on the
    weights' path (fast); a small ``D_std`` means they were learned at the
    same time for all images (simultaneously), not one after the other.

    Args:
        distances: ``D_k`` at the epochs where concepts were counted
            (one per entry of ``n_fg_per_epoch``).
        n_fg_per_epoch: For each of those epochs, ``N_fg`` of every image.

    Returns:
        ``(D_mean, D_std, m)`` with ``m`` the index of the peak per image.

    Example:
        >>> distance_at_peak([1.0, 2.0, 3.0], [[5, 0], [1, 2], [5, 1]])
        (1.5, 0.5, [0, 1])
    """
    counts = torch.as_tensor([list(c) for c in n_fg_per_epoch], dtype=torch.float)
    if counts.dim() != 2 or counts.shape[0] != len(distances):
        raise ValueError(f'need one distance per epoch of counts; got {len(distances)} distances '
                         f'and counts of shape {tuple(counts.shape)}.')
    # argmax of the first maximum: flip ties towards the earliest epoch.
    peak = (counts == counts.max(0, keepdim=True).values).float().argmax(0)
    at_peak = torch.as_tensor(distances, dtype=torch.float)[peak]
    if at_peak.numel() == 0:
        return math.nan, math.nan, []
    return (at_peak.mean().item(), at_peak.std(unbiased=False).item(), peak.tolist())
