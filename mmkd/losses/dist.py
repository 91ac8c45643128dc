"""DIST: Knowledge Distillation from A Stronger Teacher (Huang et al., NeurIPS 2022)."""
from typing import Tuple

import torch

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError
from .functional import softmax_logits, tempered_softmax


def pearson_correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    r"""Pearson correlation of each row of ``a`` with the same row of ``b``.

    .. math::
        \rho(u, v) = \frac{(u - \bar{u})^\top (v - \bar{v})}
        {\|u - \bar{u}\|_2 \, \|v - \bar{v}\|_2 + \epsilon}

    (the cosine similarity of the centred rows; :math:`\epsilon` is added
    to the product of the norms, as in the authors' code).

    Args:
        a: (M, K).
        b: (M, K).
        eps: :math:`\epsilon`.

    Returns:
        (M, ) correlations in :math:`[-1, 1]`.
    """
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


@MODELS.register_module()
class DISTLoss(BaseDistillLoss):
    r"""DIST: match the relations of the predictions, not the predictions.

    From "Knowledge Distillation from A Stronger Teacher" (Huang et al.,
    NeurIPS 2022). With :math:`Y^S, Y^T \in \mathbb{R}^{B \times C}` the
    tempered softmax :math:`\mathrm{softmax}(z / \tau)` of the student's
    and teacher's logits for a batch of :math:`B` samples and :math:`\rho`
    the Pearson correlation (:func:`pearson_correlation`):

    .. math::
        \mathcal{L}_{inter} = 1 - \frac{1}{B} \sum_{i=1}^{B}
        \rho\big(Y^S_{i,:}, Y^T_{i,:}\big), \qquad
        \mathcal{L}_{intra} = 1 - \frac{1}{C} \sum_{j=1}^{C}
        \rho\big(Y^S_{:,j}, Y^T_{:,j}\big),

    .. math::
        \mathcal{L}_{DIST} = \tau^2 \big(\beta \, \mathcal{L}_{inter}
        + \gamma \, \mathcal{L}_{intra}\big).

    The inter-class relation compares each sample's class distribution; the
    intra-class relation compares, for each class, its probabilities across
    the batch (so the loss depends on the batch, and is computed per
    process under DDP, as in the authors' code). :math:`\beta = \gamma = 1`
    and :math:`\tau = 1` are the defaults of the authors' ``DIST`` module;
    their training configs put ``kd_loss_weight=2`` on it (CE weight 1) and
    use :math:`\tau = 4` on CIFAR-100 (``dist_t4``), :math:`\tau = 1` on
    ImageNet. Logits of shape (N, C, H, W) are compared per position (each
    pixel a row, the authors' segmentation variant). Computed in fp32.

    With ``logit_standardization`` (Sun et al., CVPR 2024) both nets'
    logits are z-scored per sample (per position) before the temperature;
    the authors of that paper did not combine it with DIST.

    Fidelity: docs/fidelity.md#dist

    Args:
        beta: Weight :math:`\beta` of the inter-class relation.
        gamma: Weight :math:`\gamma` of the intra-class relation.
        tau: Temperature :math:`\tau`.
        logit_standardization: Z-score each net's logits before the softmax.
        loss_weight: Factor on the loss.

    Example:
        >>> loss = DISTLoss(tau=4.0, loss_weight=2.0)
        >>> value = loss(torch.randn(64, 100), torch.randn(64, 100))
    """

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, tau: float = 1.0,
                 logit_standardization: bool = False, loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if tau <= 0:
            raise ValueError(f'DISTLoss tau must be positive; got {tau}.')
        self.beta = beta
        self.gamma = gamma
        self.tau = tau
        self.logit_standardization = logit_standardization

    def loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        inter, intra = self.relations(student, teacher)
        return self.beta * inter + self.gamma * intra

    def relations(self, student: torch.Tensor,
                  teacher: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""``(inter, intra)``: the two relation losses, each times :math:`\tau^2`."""
        self.check_same_shape(student, teacher)
        if student.dim() not in (2, 4):
            raise ShapeMismatchError(type(self).__name__, student.shape, teacher.shape,
                                     '(N, C) logits or (N, C, H, W) logit maps')
        if student.dim() == 4:
            classes = student.shape[1]
            student = student.movedim(1, -1).reshape(-1, classes)
            teacher = teacher.movedim(1, -1).reshape(-1, classes)
        y_s = tempered_softmax(softmax_logits(student, self.logit_standardization), self.tau)
        y_t = tempered_softmax(softmax_logits(teacher, self.logit_standardization), self.tau)
        inter = 1 - pearson_correlation(y_s, y_t).mean()
        intra = 1 - pearson_correlation(y_s.t(), y_t.t()).mean()
        return inter * self.tau**2, intra * self.tau**2

    def extra_repr(self) -> str:
        standardized = ', logit_standardization=True' if self.logit_standardization else ''
        return (f'beta={self.beta}, gamma={self.gamma}, tau={self.tau}, '
                f'loss_weight={self.loss_weight}{standardized}')
