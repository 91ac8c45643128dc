"""The six numbers of Cheng et al. (2020) from a run's per-epoch entropy maps."""
import math
from typing import Dict, Optional, Sequence

import torch

from .stability import concept_stability, nanmean
from .visual_concepts import count_concepts, foreground_ratio
from .weight_distance import distance_at_peak


def summarize_knowledge(entropy_per_epoch: Sequence[torch.Tensor], foreground: torch.Tensor,
                        distances: Optional[Sequence[float]] = None,
                        threshold: float = 0.2) -> Dict[str, float]:
    """``N_fg``, ``N_bg``, ``lambda`` (final epoch), ``D_mean``, ``D_std``, ``rho``.

    * Hypothesis 1 (more knowledge): ``N_fg`` and ``N_bg`` are the mean
      foreground / background concepts per image of the final network,
      ``lambda = E_I[N_fg / (N_fg + N_bg)]``.
    * Hypothesis 2 (learned simultaneously and fast): ``D_mean`` /
      ``D_std`` are the mean / std over images of the weight distance at
      the epoch where the image's foreground concepts peak
      (:func:`distance_at_peak`).
    * Hypothesis 3 (fewer detours): ``rho`` is the mean over images of
      ``|S_M| / |S_1 u ... u S_M|`` over the foreground concepts
      (:func:`concept_stability`).

    Also returned: ``H_fg - H_bg``, the mean entropy of the foreground
    cells minus that of the background cells at the final epoch (negative
    when the layer keeps more of the foreground than of the background).

    Args:
        entropy_per_epoch: (N, rows, cols) entropy maps of the same images,
            one per measured epoch, in order.
        foreground: (N, rows, cols) bool foreground cells.
        distances: Weight distance ``D`` at each measured epoch; without
            it ``D_mean`` and ``D_std`` are NaN.
        threshold: ``b`` of the concept rule.

    Returns:
        A dict of floats (NaN where undefined).
    """
    if not len(entropy_per_epoch):
        raise ValueError('summarize_knowledge needs the entropy maps of at least one epoch.')
    counts = [count_concepts(h, foreground, threshold) for h in entropy_per_epoch]
    final, last = counts[-1], entropy_per_epoch[-1]
    fg = foreground.bool()
    out = dict(N_fg=final.n_fg.float().mean().item(), N_bg=final.n_bg.float().mean().item(),
               **{'lambda': foreground_ratio(final.n_fg.tolist(), final.n_bg.tolist())})
    h_fg = nanmean([last[i][fg[i]].mean() if fg[i].any() else math.nan
                    for i in range(len(last))])
    out['H_fg-H_bg'] = h_fg - nanmean(final.background_entropy)
    if distances is not None:
        d_mean, d_std, _ = distance_at_peak(distances, [c.n_fg.tolist() for c in counts])
    else:
        d_mean = d_std = math.nan
    out.update(D_mean=d_mean, D_std=d_std)
    out['rho'] = nanmean(concept_stability([c.concepts & fg for c in counts]))
    return out
