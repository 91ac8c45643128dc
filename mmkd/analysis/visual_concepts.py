"""Visual concepts: the cells whose information a layer keeps (Cheng et al., 2020)."""
import math
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class ConceptCounts:
    """Visual concepts of a batch of images.

    Attributes:
        concepts: (N, rows, cols) bool, the cells that are concepts.
        n_fg: (N,) concepts on the foreground (task-relevant).
        n_bg: (N,) concepts on the background (task-irrelevant).
        background_entropy: (N,) mean entropy of the background cells.
    """

    concepts: torch.Tensor
    n_fg: torch.Tensor
    n_bg: torch.Tensor
    background_entropy: torch.Tensor


def count_concepts(entropy: torch.Tensor, foreground: torch.Tensor,
                   threshold: float = 0.2) -> ConceptCounts:
    """Cells used much more than the background on average.

    With ``H_bg`` the mean entropy of an image's background cells, cell
    ``i`` is a visual concept when ``H_bg - H_i > b``. Concepts on the
    foreground are task-relevant (``N_fg``), those on the background are
    not (``N_bg``). An image without background cells has no reference
    level: it gets no concepts.

    Args:
        entropy: (N, rows, cols) entropy of each cell.
        foreground: (N, rows, cols) bool foreground cells.
        threshold: ``b``.

    Returns:
        A :class:`ConceptCounts`.

    Example:
        >>> entropy = torch.tensor([[[0.0, 1.0], [1.0, 0.9]]])
        >>> fg = torch.tensor([[[True, False], [False, True]]])
        >>> count_concepts(entropy, fg, 0.2).n_fg  # H_bg = 1: 0 is a concept
        tensor([1])
    """
    if entropy.shape != foreground.shape:
        raise ValueError(f'entropy {tuple(entropy.shape)} and foreground '
                         f'{tuple(foreground.shape)} must have the same (N, rows, cols).')
    background = ~foreground
    n_background = background.flatten(1).sum(1)
    h_bg = (entropy * background).flatten(1).sum(1) / n_background.clamp_min(1)
    concepts = (h_bg.view(-1, 1, 1) - entropy) > threshold
    concepts &= (n_background > 0).view(-1, 1, 1)
    n_fg = (concepts & foreground).flatten(1).sum(1)
    n_bg = (concepts & background).flatten(1).sum(1)
    h_bg = torch.where(n_background > 0, h_bg, torch.full_like(h_bg, math.nan))
    return ConceptCounts(concepts=concepts, n_fg=n_fg, n_bg=n_bg, background_entropy=h_bg)


def foreground_ratio(n_fg: Sequence[float], n_bg: Sequence[float]) -> float:
    """``lambda = E_I[N_fg / (N_fg + N_bg)]`` over images with a concept.

    Args:
        n_fg: Foreground concepts per image.
        n_bg: Background concepts per image.

    Returns:
        The mean ratio; NaN when no image has a concept.

    Example:
        >>> foreground_ratio([3, 0, 1], [1, 0, 1])
        0.625
    """
    ratios = [f / (f + b) for f, b in zip(n_fg, n_bg) if f + b > 0]
    return sum(ratios) / len(ratios) if ratios else math.nan
