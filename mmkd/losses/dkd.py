"""Decoupled Knowledge Distillation (Zhao et al., CVPR 2022)."""
from typing import Optional, Sequence, Tuple

import torch

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError
from .functional import class_indices, kl_divergence, softmax_logits, tempered_log_softmax


@MODELS.register_module()
class DKDLoss(BaseDistillLoss):
    r"""DKD: KD split into a target-class and a non-target-class term, reweighted.

    From "Decoupled Knowledge Distillation" (Zhao et al., CVPR 2022). With
    :math:`p = \mathrm{softmax}(z / \tau)` of a net's logits :math:`z` and
    :math:`y` the ground-truth class of the sample,

    * the binary target / non-target split
      :math:`b = (p_y, \; 1 - p_y)`;
    * the distribution among the non-target classes
      :math:`\hat{p}_i = p_i / (1 - p_y) = \mathrm{softmax}_{i \ne y}(z_i / \tau)`;

    and, with :math:`S` the student, :math:`T` the teacher,

    .. math::
        \mathrm{TCKD} = \mathrm{KL}(b^T \,\|\, b^S), \qquad
        \mathrm{NCKD} = \mathrm{KL}(\hat{p}^T \,\|\, \hat{p}^S),

    .. math::
        \mathcal{L}_{DKD} = \tau^2 \, \frac{1}{N} \sum_{n=1}^{N}
        \big(\alpha \, \mathrm{TCKD}_n + \beta \, \mathrm{NCKD}_n\big).

    Classical KD is :math:`\mathrm{TCKD} + (1 - p^T_y)\,\mathrm{NCKD}`; DKD
    frees NCKD from the teacher's confidence. The authors' code removes the
    target class from NCKD's softmax by subtracting 1000 from its tempered
    logit; here it is left out of the softmax (the same value, without the
    :math:`e^{-1000}` remainder), and :math:`\log(1 - p_y)` is a
    log-sum-exp over the other classes (exact where :math:`p_y \to 1`).
    The linear warm-up of the paper (20 of 240 epochs) is a
    ``DistillLossScheduleHook``. Computed in fp32.

    The labels come from the batch's ``data_samples`` (mmpretrain
    ``DataSample.gt_label``, one class per sample). In the distiller's
    build-time dry run there are none (``data_samples=None``): the
    teacher's argmax then stands in for the labels, only so that the shapes
    and the code path are checked; no training step runs without labels.

    With ``logit_standardization`` (Sun et al., CVPR 2024) both nets'
    logits are z-scored per sample first, :math:`\tau` is the authors' base
    temperature and :math:`\tau^2` stays, as in their code (their CIFAR-100
    ResNet-56 -> ResNet-20 run: :math:`\tau = 3`, :math:`\alpha = 18`,
    :math:`\beta = 36`).

    Fidelity: docs/fidelity.md#dkd

    Args:
        alpha: Weight :math:`\alpha` of TCKD.
        beta: Weight :math:`\beta` of NCKD (8 for most CIFAR-100 pairs in
            the paper, 2 for ResNet-56 -> ResNet-20).
        tau: Temperature :math:`\tau`.
        logit_standardization: Z-score each net's logits before the softmax.
        loss_weight: Factor on the loss.

    Example:
        >>> loss = DKDLoss(alpha=1.0, beta=8.0, tau=4.0)
        >>> samples = [DataSample().set_gt_label(3), DataSample().set_gt_label(7)]
        >>> value = loss(torch.randn(2, 10), torch.randn(2, 10), samples)
    """

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, tau: float = 4.0,
                 logit_standardization: bool = False, loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if tau <= 0:
            raise ValueError(f'DKDLoss tau must be positive; got {tau}.')
        self.alpha = alpha
        self.beta = beta
        self.tau = tau
        self.logit_standardization = logit_standardization

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                data_samples: Optional[Sequence] = None) -> torch.Tensor:
        return self.loss_weight * self.loss(student, teacher, data_samples)

    def loss(self, student: torch.Tensor, teacher: torch.Tensor,
             data_samples: Optional[Sequence] = None) -> torch.Tensor:
        self.check_same_shape(student, teacher)
        if student.dim() != 2 or student.shape[1] < 2:
            raise ShapeMismatchError(type(self).__name__, student.shape, teacher.shape,
                                     '(N, C) logits with at least 2 classes')
        tckd, nckd = self.decoupled(student, teacher, self.labels(data_samples, teacher))
        return self.alpha * tckd + self.beta * nckd

    def decoupled(self, student: torch.Tensor, teacher: torch.Tensor,
                  labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""The two terms, each batch-averaged and multiplied by :math:`\tau^2`.

        Args:
            student: Student logits, (N, C).
            teacher: Teacher logits, (N, C).
            labels: Class indices, (N, ).

        Returns:
            ``(TCKD, NCKD)``, scalars without :math:`\alpha`, :math:`\beta`.
        """
        num, classes = student.shape
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
            raise ValueError(f'DKDLoss labels must lie in [0, {classes}); got '
                             f'{labels.min().item()}..{labels.max().item()}.')
        student = softmax_logits(student, self.logit_standardization)
        teacher = softmax_logits(teacher, self.logit_standardization)
        target = torch.zeros_like(student, dtype=torch.bool)
        target[torch.arange(num, device=student.device), labels] = True
        tckd = kl_divergence(self._binary_log_probs(teacher, target),
                             self._binary_log_probs(student, target),
                             target_is_log=True, reduction='batchmean')
        others_s = student[~target].view(num, classes - 1)
        others_t = teacher[~target].view(num, classes - 1)
        nckd = kl_divergence(tempered_log_softmax(others_t, self.tau),
                             tempered_log_softmax(others_s, self.tau),
                             target_is_log=True, reduction='batchmean')
        return tckd * self.tau**2, nckd * self.tau**2

    def _binary_log_probs(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(log p_y, log(1 - p_y))`` per sample, (N, 2)."""
        log_p = tempered_log_softmax(logits, self.tau)
        num = log_p.shape[0]
        on_target = log_p[target]
        off_target = log_p[~target].view(num, -1).logsumexp(1)
        return torch.stack([on_target, off_target], dim=1)

    @staticmethod
    def labels(data_samples: Optional[Sequence], teacher: torch.Tensor) -> torch.Tensor:
        """Class indices (N, ) from ``gt_label``; the teacher's argmax without samples.

        Raises:
            ValueError: A sample has no single ground-truth class, or the
                samples are not as many as the logits.
        """
        if data_samples is None:  # the build-time dry run: shapes only
            return teacher.argmax(1)
        labels = class_indices(data_samples, 'DKDLoss')
        if labels is None:
            raise ValueError('DKDLoss needs one ground-truth class per sample '
                             '(DataSample.gt_label); some data samples have none.')
        if len(labels) != teacher.shape[0]:
            raise ValueError(f'DKDLoss got {len(labels)} data samples for '
                             f'{teacher.shape[0]} logits.')
        return labels.to(teacher.device)

    def extra_repr(self) -> str:
        standardized = ', logit_standardization=True' if self.logit_standardization else ''
        return (f'alpha={self.alpha}, beta={self.beta}, tau={self.tau}, '
                f'loss_weight={self.loss_weight}{standardized}')
