"""Hierarchical context loss of Knowledge Review (Chen et al., CVPR 2021)."""
from typing import Sequence

import torch
import torch.nn.functional as F

from mmkd.registry import MODELS

from .base import BaseDistillLoss, TensorOrList
from .functional import paired


def hierarchical_context_loss(student: torch.Tensor, teacher: torch.Tensor,
                              levels: Sequence[int] = (4, 2, 1)) -> torch.Tensor:
    """HCL of one feature pair (see :class:`HCLLoss`)."""
    loss = F.mse_loss(student, teacher)
    weight, total = 1.0, 1.0
    for size in levels:
        if size >= student.shape[-2]:
            continue  # the authors' rule: the height alone decides (see HCLLoss)
        weight /= 2.0
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(student, size),
                                          F.adaptive_avg_pool2d(teacher, size))
        total += weight
    return loss / total


@MODELS.register_module()
class HCLLoss(BaseDistillLoss):
    r"""Hierarchical context loss over the stages of a review path.

    For each level :math:`i` of the review path (the stage features and,
    as in the authors' code, the globally pooled feature as a
    :math:`1 \times 1` map), the features are compared at full resolution
    and after adaptive average pooling to :math:`4 \times 4`,
    :math:`2 \times 2`, :math:`1 \times 1`, with weights
    :math:`1, \frac12, \frac14, \frac18` for the pyramid levels kept,
    normalised by their sum:

    .. math::
        \mathcal{L}_{HCL} = \sum_{i} \frac{\sum_{k} w_k \,
        \mathrm{MSE}\big(P_k(s_i), P_k(t_i)\big)}{\sum_k w_k}

    where :math:`P_0` is the identity and :math:`\mathrm{MSE}` the mean
    squared error over all elements. A :math:`1 \times 1` level is
    compared by its MSE alone.

    Which pyramid sizes are kept follows the authors' code (ReviewKD's
    CIFAR-100 and ImageNet ``hcl``, mdistiller's ``hcl_loss``): size
    :math:`l` is skipped when :math:`l \ge H`, the feature's *height*, and
    the pooled map is always :math:`l \times l`. On square maps this is
    "skip what would not shrink the map"; on a non-square map the width
    plays no part (a :math:`2 \times 8` map keeps only :math:`1 \times 1`,
    an :math:`8 \times 2` map keeps all three, pooling its width of 2 up
    to 4 by repetition), as in that code.

    Fidelity: docs/fidelity.md#reviewkd

    Args:
        levels: Pooled sizes after the full resolution.
        loss_weight: Factor on the loss.

    Example:
        >>> HCLLoss()([torch.randn(2, 8, 8, 8)], [torch.randn(2, 8, 8, 8)])
    """

    def __init__(self, levels: Sequence[int] = (4, 2, 1), loss_weight: float = 1.0):
        super().__init__(loss_weight)
        self.levels = tuple(levels)

    def loss(self, student: TensorOrList, teacher: TensorOrList) -> torch.Tensor:
        pairs = paired(student, teacher, 'HCLLoss', 'features')
        total = pairs[0][0].new_zeros((), dtype=torch.float32)
        for s, t in pairs:
            self.check_same_shape(s, t)
            total = total + hierarchical_context_loss(s.float(), t.float(), self.levels)
        return total

    def extra_repr(self) -> str:
        return f'levels={self.levels}, loss_weight={self.loss_weight}'
