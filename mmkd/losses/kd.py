"""Knowledge distillation with soft targets (Hinton et al., 2015)."""
import torch

from mmkd.registry import MODELS

from .base import BaseDistillLoss
from .functional import kl_divergence, softmax_logits, tempered_log_softmax


@MODELS.register_module()
class KDLoss(BaseDistillLoss):
    r"""Hinton's KD: KL divergence between temperature-softened predictions.

    .. math::
        \mathcal{L}_{KD} = \tau^2 \, \frac{1}{N} \sum_{n=1}^{N}
        \mathrm{KL}\big(\mathrm{softmax}(t_n / \tau) \,\|\, \mathrm{softmax}(s_n / \tau)\big)

    The :math:`\tau^2` factor keeps the gradient scale independent of the
    temperature. Logits are compared in fp32 (safe under autocast).

    With ``logit_standardization`` (Sun et al., CVPR 2024) both nets' logits
    are z-scored per sample first (:func:`~mmkd.losses.functional.standardize_logits`):
    :math:`s_n, t_n` above become :math:`\mathcal{Z}(s_n), \mathcal{Z}(t_n)`,
    :math:`\tau` is then the authors' *base* temperature (2 in their
    CIFAR-100 KD runs, with ``loss_weight=9``) and :math:`\tau^2` stays, as
    in their code.

    Fidelity: docs/fidelity.md#kd

    Args:
        tau: Temperature :math:`\tau`.
        loss_weight: Factor on the loss (the paper's :math:`\alpha`).
        reduction: ``'batchmean'`` (the formula) or ``'sum'``.
        logit_standardization: Z-score each net's logits before the softmax.

    Example:
        >>> loss = KDLoss(tau=4)(torch.randn(8, 10), torch.randn(8, 10))
    """

    def __init__(self, tau: float = 4.0, loss_weight: float = 1.0,
                 reduction: str = 'batchmean', logit_standardization: bool = False):
        super().__init__(loss_weight)
        if tau <= 0:
            raise ValueError(f'KDLoss tau must be positive; got {tau}.')
        if reduction not in ('batchmean', 'sum'):
            raise ValueError(f"KDLoss reduction must be 'batchmean' or 'sum'; got {reduction!r}.")
        self.tau = tau
        self.reduction = reduction
        self.logit_standardization = logit_standardization

    def loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self.check_same_shape(student, teacher)
        log_p_s = tempered_log_softmax(softmax_logits(student, self.logit_standardization),
                                       self.tau)
        log_p_t = tempered_log_softmax(softmax_logits(teacher, self.logit_standardization),
                                       self.tau)
        kl = kl_divergence(log_p_t, log_p_s, target_is_log=True, reduction=self.reduction)
        return kl * self.tau**2

    def extra_repr(self) -> str:
        standardized = ', logit_standardization=True' if self.logit_standardization else ''
        return f'tau={self.tau}, loss_weight={self.loss_weight}{standardized}'
