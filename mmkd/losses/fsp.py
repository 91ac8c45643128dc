"""Flow of solution procedure matrices (FSP; Yim et al., CVPR 2017)."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError


def fsp_matrix(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    r"""The FSP matrix of two feature maps of one net.

    .. math::
        G_{ij}(F^1, F^2) = \frac{1}{h w} \sum_{p=1}^{h w} F^1_{p,i} \, F^2_{p,j}

    i.e. :math:`G = F_1^\top F_2 / (h w)` with each map flattened to
    :math:`(h w) \times c`. The larger map is first average-pooled to the
    spatial size of the smaller one.

    Args:
        first: (N, m, H1, W1) features.
        second: (N, n, H2, W2) features of the same samples.

    Returns:
        (N, m, n) matrices.

    Example:
        >>> fsp_matrix(torch.rand(2, 16, 28, 28), torch.rand(2, 32, 14, 14)).shape
        torch.Size([2, 16, 32])
    """
    if first.dim() != 4 or second.dim() != 4 or first.shape[0] != second.shape[0]:
        raise ValueError(f'fsp_matrix needs two (N, C, H, W) maps of the same N; got '
                         f'{tuple(first.shape)} and {tuple(second.shape)}.')
    size = (min(first.shape[2], second.shape[2]), min(first.shape[3], second.shape[3]))
    if tuple(first.shape[2:]) != size:
        first = F.adaptive_avg_pool2d(first, size)
    if tuple(second.shape[2:]) != size:
        second = F.adaptive_avg_pool2d(second, size)
    a = first.float().flatten(2)  # (N, m, hw)
    b = second.float().flatten(2)  # (N, n, hw)
    return torch.bmm(a, b.transpose(1, 2)) / a.shape[2]


@MODELS.register_module()
class FSPLoss(BaseDistillLoss):
    r"""Matches the student's FSP matrices to the teacher's (Yim et al. 2017).

    For layer pairs :math:`(a_i, b_i)` of each net (:func:`fsp_matrix`):

    .. math::
        \mathcal{L}_{FSP} = \frac{1}{N} \sum_{x=1}^{N} \sum_{i}
        \lambda_i \, \big\| G_i^T(x) - G_i^S(x) \big\|_F^2 ,
        \qquad G_i = G(F_{a_i}, F_{b_i})

    ``student`` and ``teacher`` are lists of features of their net, shallow
    to deep (list references in the distiller, e.g.
    ``student=['student.stem', 'student.layer1', 'student.layer2']``); the
    pairs are the consecutive ones, (0, 1), (1, 2), ..., unless ``pairs``
    names others. Each student matrix must have the shape of the teacher's
    (same channels at both ends of the pair); the spatial sizes of the two
    nets may differ. Used as stage 1 of two-stage training
    (:class:`~mmkd.engine.StagedTrainLoop`).

    Fidelity: docs/fidelity.md#fsp

    Args:
        pairs: Index pairs into the feature lists; consecutive by default.
        pair_weights: :math:`\lambda_i`, one per pair; 1 by default.
        reduction: ``'sum'`` (the formula: squared differences summed over
            the matrix entries) or ``'mean'`` (averaged over them instead).
        loss_weight: Factor on the loss.

    Example:
        >>> feats = [torch.rand(2, 4, 8, 8), torch.rand(2, 8, 4, 4)]
        >>> FSPLoss()(feats, [f + 1 for f in feats]).shape
        torch.Size([])
    """

    def __init__(self, pairs: Optional[Sequence[Sequence[int]]] = None,
                 pair_weights: Optional[Sequence[float]] = None, reduction: str = 'sum',
                 loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if reduction not in ('sum', 'mean'):
            raise ValueError(f"FSPLoss reduction must be 'sum' or 'mean'; got {reduction!r}.")
        self.pairs = None if pairs is None else [tuple(p) for p in pairs]
        if self.pairs is not None and any(len(p) != 2 for p in self.pairs):
            raise ValueError(f'FSPLoss pairs must be (first, second) indices; got {pairs}.')
        self.pair_weights = None if pair_weights is None else [float(w) for w in pair_weights]
        self.reduction = reduction

    def _pairs(self, count: int) -> Sequence[Tuple[int, int]]:
        pairs = self.pairs if self.pairs is not None else [(i, i + 1) for i in range(count - 1)]
        if not pairs:
            raise ValueError(f'FSPLoss needs at least two features per net; got {count}.')
        for pair in pairs:
            if not all(-count <= i < count for i in pair):
                raise ValueError(f'FSPLoss pair {pair} is out of range for {count} features.')
        if self.pair_weights is not None and len(self.pair_weights) != len(pairs):
            raise ValueError(f'FSPLoss has {len(pairs)} pairs but {len(self.pair_weights)} '
                             'pair_weights.')
        return pairs

    def loss(self, student: Sequence[torch.Tensor],
             teacher: Sequence[torch.Tensor]) -> torch.Tensor:
        if isinstance(student, torch.Tensor) or isinstance(teacher, torch.Tensor):
            raise TypeError('FSPLoss takes a list of features per net (list references, e.g. '
                            "student=['student.layer1', 'student.layer2']); got a tensor.")
        if len(student) != len(teacher):
            raise ValueError(f'FSPLoss got {len(student)} student features and {len(teacher)} '
                             'teacher features; give both nets the same layers.')
        total = student[0].new_zeros((), dtype=torch.float32)
        for k, (i, j) in enumerate(self._pairs(len(student))):
            g_s = fsp_matrix(student[i], student[j])
            with torch.no_grad():
                g_t = fsp_matrix(teacher[i], teacher[j])
            if g_s.shape != g_t.shape:
                raise ShapeMismatchError(
                    type(self).__name__, g_s.shape, g_t.shape,
                    f'FSP matrices of the same shape for pair {(i, j)} (the same channels at '
                    'both layers of each net; map the student through connectors otherwise)')
            diff = (g_s - g_t).pow(2).flatten(1)
            term = diff.sum(1).mean() if self.reduction == 'sum' else diff.mean()
            weight = 1.0 if self.pair_weights is None else self.pair_weights[k]
            total = total + weight * term
        return total

    def extra_repr(self) -> str:
        return (f'pairs={self.pairs or "consecutive"}, reduction={self.reduction}, '
                f'loss_weight={self.loss_weight}')
