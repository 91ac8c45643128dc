"""Partial L2 of "A Comprehensive Overhaul of Feature Distillation" (Heo et al., ICCV 2019)."""
from typing import List, Optional, Sequence

import torch

from mmkd.registry import MODELS

from .base import BaseDistillLoss, TensorOrList
from .functional import paired


def partial_l2(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Sum of :math:`(s - t)^2` where :math:`s > t` or :math:`t > 0`.

    Where the teacher's target is not positive (a rectified-away response)
    and the student is already below it, the ReLU that follows both would
    output zero anyway: that element costs nothing.
    """
    mask = (student > target) | (target > 0)
    return ((student - target).pow(2) * mask).sum()


@MODELS.register_module()
class OFDLoss(BaseDistillLoss):
    r"""OFD's partial L2 between student features and margin-ReLU teacher targets.

    For stages :math:`i = 1..n` with student features :math:`s_i` (after
    the student connector) and targets :math:`t_i = \max(T_i, m_i)` (the
    teacher's pre-ReLU features through :class:`~mmkd.connectors.MarginReLU`):

    .. math::
        \mathcal{L}_{OFD} = \frac{1}{N \cdot Z} \sum_{i=1}^{n} w_i
        \sum_{j} \mathbb{1}\big[s_{ij} > t_{ij} \lor t_{ij} > 0\big] (s_{ij} - t_{ij})^2,
        \qquad w_i = 2^{-(n-i)}

    with batch size :math:`N` and normaliser :math:`Z` (1000 in the
    paper's CIFAR code, 10000 for ImageNet): the deepest stage weighs 1, each
    shallower one half the next.

    Fidelity: docs/fidelity.md#ofd

    Args:
        normalizer: :math:`Z`.
        stage_weights: :math:`w_i`; ``None`` for :math:`2^{-(n-i)}`.
        loss_weight: Factor on the loss.

    Example:
        >>> loss = OFDLoss()([torch.randn(2, 8, 4, 4)], [torch.randn(2, 8, 4, 4)])
    """

    def __init__(self, normalizer: float = 1000.0,
                 stage_weights: Optional[Sequence[float]] = None, loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if normalizer <= 0:
            raise ValueError(f'OFDLoss normalizer must be positive; got {normalizer}.')
        self.normalizer = normalizer
        self.stage_weights = None if stage_weights is None else [float(w) for w in stage_weights]

    def weights(self, num_stages: int) -> List[float]:
        if self.stage_weights is None:
            return [2.0**-(num_stages - 1 - i) for i in range(num_stages)]
        if len(self.stage_weights) != num_stages:
            raise ValueError(f'OFDLoss has {len(self.stage_weights)} stage_weights for '
                             f'{num_stages} stages.')
        return self.stage_weights

    def loss(self, student: TensorOrList, teacher: TensorOrList) -> torch.Tensor:
        pairs = paired(student, teacher, 'OFDLoss', 'features')
        batch = pairs[0][0].shape[0]
        total = pairs[0][0].new_zeros((), dtype=torch.float32)
        for w, (s, t) in zip(self.weights(len(pairs)), pairs):
            self.check_same_shape(s, t)
            total = total + w * partial_l2(s.float(), t.float())
        return total / (batch * self.normalizer)

    def extra_repr(self) -> str:
        return (f'normalizer={self.normalizer}, stage_weights={self.stage_weights}, '
                f'loss_weight={self.loss_weight}')
