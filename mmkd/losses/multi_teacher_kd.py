"""Soft targets of several teachers combined into one (arithmetic or geometric mean)."""
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError
from .functional import kl_divergence, softmax_logits, tempered_log_softmax, tensor_list

COMBINATIONS = ('arithmetic', 'geometric')


@MODELS.register_module()
class MultiTeacherKDLoss(BaseDistillLoss):
    r"""KD towards the combined soft targets of :math:`K` teachers.

    With teacher logits :math:`t^{(k)}`, weights :math:`w_k` (normalised to
    sum to one; equal by default) and :math:`p^{(k)} = \mathrm{softmax}(t^{(k)} / \tau)`,
    the target is

    * ``'arithmetic'``: the weighted mean of the probabilities,
      :math:`q = \sum_k w_k \, p^{(k)}`;
    * ``'geometric'``: the normalised weighted geometric mean,
      :math:`q \propto \prod_k \big(p^{(k)}\big)^{w_k}`, which equals
      :math:`\mathrm{softmax}\big(\sum_k w_k t^{(k)} / \tau\big)`
      (the product of experts of the teachers).

    The loss is Hinton's KD towards :math:`q`:

    .. math::
        \mathcal{L} = \tau^2 \, \frac{1}{N} \sum_{n=1}^{N}
        \mathrm{KL}\big(q_n \,\|\, \mathrm{softmax}(s_n / \tau)\big)

    With one teacher both combinations reduce to :class:`KDLoss`.

    With ``logit_standardization`` (Sun et al., CVPR 2024) every teacher's
    logits and the student's are z-scored per sample before the temperature
    (:func:`~mmkd.losses.functional.standardize_logits`), as in
    :class:`KDLoss`.

    Fidelity: docs/fidelity.md#multi-teacher

    Args:
        combine: ``'arithmetic'`` or ``'geometric'``.
        weights: One weight per teacher, in the order of the ``teacher``
            references; normalised to sum to one. ``None`` weighs the
            teachers equally.
        tau: Temperature :math:`\tau`.
        loss_weight: Factor on the loss.
        logit_standardization: Z-score each net's logits before the softmax.

    Example (loss config of a :class:`MultiTeacherDistiller`)::

        loss_kd=dict(type='MultiTeacherKDLoss', student='student.logits',
                     teacher=['t1.logits', 't2.logits'], combine='geometric',
                     weights=[2, 1], tau=4, loss_weight=0.9)

        >>> loss = MultiTeacherKDLoss(tau=4)
        >>> value = loss(torch.randn(8, 10), [torch.randn(8, 10), torch.randn(8, 10)])
    """

    def __init__(self, combine: str = 'arithmetic', weights: Optional[Sequence[float]] = None,
                 tau: float = 4.0, loss_weight: float = 1.0,
                 logit_standardization: bool = False):
        super().__init__(loss_weight)
        if combine not in COMBINATIONS:
            raise ValueError(f'MultiTeacherKDLoss combine must be one of {COMBINATIONS}; '
                             f'got {combine!r}.')
        if tau <= 0:
            raise ValueError(f'MultiTeacherKDLoss tau must be positive; got {tau}.')
        if weights is not None:
            weights = [float(w) for w in weights]
            if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError('MultiTeacherKDLoss weights must be non-negative with a '
                                 f'positive sum; got {weights}.')
        self.combine = combine
        self.weights = weights
        self.tau = tau
        self.logit_standardization = logit_standardization

    def _teacher_weights(self, num: int, like: torch.Tensor) -> torch.Tensor:
        if self.weights is None:
            return like.new_full((num, ), 1.0 / num)
        if len(self.weights) != num:
            raise ValueError(f'MultiTeacherKDLoss has {len(self.weights)} weights for {num} '
                             'teacher value(s); give one weight per teacher reference.')
        weights = like.new_tensor(self.weights)
        return weights / weights.sum()

    def target(self, teacher: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
        """The combined soft targets :math:`q`, shape (N, C).

        Args:
            teacher: The teachers' logits, a list of (N, C) tensors (or one).

        Returns:
            Class probabilities that sum to one over the classes.
        """
        logits = tensor_list(teacher)
        if not logits:
            raise ValueError('MultiTeacherKDLoss got no teacher values.')
        for value in logits[1:]:
            if value.shape != logits[0].shape:
                raise ShapeMismatchError(type(self).__name__, logits[0].shape, value.shape,
                                         'every teacher\'s logits of the same shape (shown '
                                         'as "student" and "teacher": two teachers)')
        stacked = torch.stack([softmax_logits(t, self.logit_standardization)
                               for t in logits]) / self.tau  # (K, N, C)
        weights = self._teacher_weights(len(logits), stacked).view(-1, 1, 1)
        if self.combine == 'arithmetic':
            return (weights * F.softmax(stacked, dim=-1)).sum(0)
        return F.softmax((weights * stacked).sum(0), dim=-1)

    def loss(self, student: torch.Tensor,
             teacher: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
        target = self.target(teacher)
        if student.shape != target.shape:
            raise ShapeMismatchError(type(self).__name__, student.shape, target.shape,
                                     'student logits of the teachers\' shape')
        log_p_s = tempered_log_softmax(softmax_logits(student, self.logit_standardization),
                                       self.tau)
        kl = kl_divergence(target, log_p_s, reduction='batchmean')
        return kl * self.tau**2

    def extra_repr(self) -> str:
        standardized = ', logit_standardization=True' if self.logit_standardization else ''
        return (f'combine={self.combine!r}, weights={self.weights}, tau={self.tau}, '
                f'loss_weight={self.loss_weight}{standardized}')
