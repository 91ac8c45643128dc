"""Knowledge distillation for sigmoid classifiers, such as dense detection heads."""
from typing import Optional

import torch

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError, TensorOrList
from .functional import binary_kl_divergence, paired


@MODELS.register_module()
class SigmoidKDLoss(BaseDistillLoss):
    r"""Hinton's KD for per-class sigmoid scores: a binary KL for every logit.

    A RetinaNet-style head (or an RPN's objectness) scores every anchor
    :math:`a` and class :math:`c` with an independent probability
    :math:`\sigma(z_{ac})`, so the softened targets are Bernoulli
    distributions rather than one softmax. With temperature :math:`\tau`,
    :math:`p = \sigma(z / \tau)` for the student (:math:`p^S`) and the
    teacher (:math:`p^T`):

    .. math::
        \mathcal{L} = \frac{\tau^2}{M} \sum_{l} \sum_{a, c}
        p^T_{ac} \log \frac{p^T_{ac}}{p^S_{ac}}
        + (1 - p^T_{ac}) \log \frac{1 - p^T_{ac}}{1 - p^S_{ac}}

    summed over the levels :math:`l` given (one map or a list of FPN
    levels), the anchors and the classes. :math:`M` is the number of anchors
    (all levels, all images) when ``num_classes`` is given - the divergence
    summed over classes, averaged over anchors - and the number of logits
    otherwise. Maps are compared element for element: student and teacher
    heads need the same anchors, classes and level sizes. Computed in fp32
    with :func:`~mmkd.losses.functional.binary_kl_divergence`, which never
    rounds below zero where student and teacher agree.

    Fidelity: docs/fidelity.md#detection

    Args:
        tau: Temperature :math:`\tau`.
        num_classes: Classes per anchor (20 for VOC; 1 for an RPN); the
            channels of each map must be a multiple of it.
        loss_weight: Factor on the loss.

    Example:
        >>> levels_s = [torch.randn(2, 9 * 20, 8, 8), torch.randn(2, 9 * 20, 4, 4)]
        >>> levels_t = [torch.randn(2, 9 * 20, 8, 8), torch.randn(2, 9 * 20, 4, 4)]
        >>> SigmoidKDLoss(tau=2, num_classes=20)(levels_s, levels_t)
    """

    def __init__(self, tau: float = 1.0, num_classes: Optional[int] = None,
                 loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if tau <= 0:
            raise ValueError(f'SigmoidKDLoss tau must be positive; got {tau}.')
        if num_classes is not None and num_classes < 1:
            raise ValueError(f'SigmoidKDLoss num_classes must be >= 1; got {num_classes}.')
        self.tau = tau
        self.num_classes = num_classes

    def loss(self, student: TensorOrList, teacher: TensorOrList) -> torch.Tensor:
        pairs = paired(student, teacher, type(self).__name__, 'levels')
        total = pairs[0][0].new_zeros((), dtype=torch.float32)
        count = 0
        for s, t in pairs:
            self.check_same_shape(s, t)
            if self.num_classes is not None and s.dim() > 1 and s.shape[1] % self.num_classes:
                raise ShapeMismatchError(
                    type(self).__name__, s.shape, t.shape,
                    f'channels that are a multiple of num_classes={self.num_classes} '
                    '(anchors x classes)')
            total = total + binary_kl_divergence(t.float() / self.tau, s.float() / self.tau,
                                                 reduction='sum')
            count += s.numel() // (self.num_classes or 1)
        return total * self.tau**2 / max(count, 1)

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, num_classes={self.num_classes}, '
                f'loss_weight={self.loss_weight}')
