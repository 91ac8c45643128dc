"""Deep Mutual Learning (Zhang et al., CVPR 2018): a member mimics its peers."""
import torch

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError, TensorOrList
from .functional import kl_divergence, tempered_log_softmax, tempered_softmax

_FORMS = ('kl', 'js')


@MODELS.register_module()
class DMLLoss(BaseDistillLoss):
    r"""Mimicry loss of one cohort member towards its K - 1 peers.

    With :math:`p_j = \mathrm{softmax}(z_j / \tau)` the (temperature-softened)
    class probabilities of member :math:`j`, member :math:`k` minimises

    .. math::
        \mathcal{L}_{k} = \frac{\tau^2}{K - 1} \sum_{j \ne k}
        \mathrm{D}\big(p_j \,\|\, p_k\big)

    where :math:`\mathrm{D}` is the Kullback-Leibler divergence
    :math:`\mathrm{KL}(p_j \| p_k) = \frac{1}{N}\sum_n \sum_c p_{j,nc}
    \log(p_{j,nc} / p_{k,nc})` (``form='kl'``, the paper's Eq. 3/5), or its
    symmetric Jensen-Shannon form (``form='js'``)

    .. math::
        \mathrm{JS}(p_j, p_k) = \tfrac12 \mathrm{KL}(p_j \| m) +
        \tfrac12 \mathrm{KL}(p_k \| m), \qquad m = \tfrac12 (p_j + p_k).

    With ``ensemble=True`` (the paper's DML_e, Sec. 3.3) the member matches the
    mean of its peers' probabilities instead of each peer:

    .. math::
        \mathcal{L}_{k} = \tau^2 \, \mathrm{D}\Big(\frac{1}{K - 1}\sum_{j \ne k}
        p_j \,\Big\|\, p_k\Big).

    Peers are targets: their values are detached, so member :math:`k`'s loss
    never sends a gradient to member :math:`j`. The :math:`\tau^2` factor
    keeps the gradient scale independent of the temperature (:math:`\tau = 1`
    is the paper's setting). Computed in fp32.

    Fidelity: docs/fidelity.md#dml

    Args:
        tau: Temperature :math:`\tau`.
        form: ``'kl'`` or ``'js'``.
        ensemble: Match the peers' mean probability (DML_e).
        loss_weight: Factor on the loss.

    Example:
        >>> loss = DMLLoss()
        >>> own = torch.randn(8, 10, requires_grad=True)
        >>> peers = [torch.randn(8, 10), torch.randn(8, 10)]  # K = 3
        >>> loss(own, peers).backward()
        >>> # peers given as probabilities, e.g. received from other ranks:
        >>> loss(own, torch.stack([loss.probs(p) for p in peers]), teacher_is_prob=True)
    """

    def __init__(self, tau: float = 1.0, form: str = 'kl', ensemble: bool = False,
                 loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if tau <= 0:
            raise ValueError(f'DMLLoss tau must be positive; got {tau}.')
        if form not in _FORMS:
            raise ValueError(f'DMLLoss form must be one of {_FORMS}; got {form!r}.')
        self.tau = tau
        self.form = form
        self.ensemble = ensemble

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Softened probabilities :math:`\\mathrm{softmax}(z / \\tau)` in fp32."""
        return tempered_softmax(logits, self.tau)

    def forward(self, student: torch.Tensor, teacher: TensorOrList,
                teacher_is_prob: bool = False) -> torch.Tensor:
        """Loss of the member with logits ``student``.

        Args:
            student: This member's logits, (N, C).
            teacher: The peers: one (N, C) tensor, a (K-1, N, C) stack or a
                sequence of (N, C) tensors; logits unless ``teacher_is_prob``.
            teacher_is_prob: ``teacher`` holds probabilities already
                softened at this loss's ``tau`` (see :meth:`probs`).

        Returns:
            The scalar loss, times ``loss_weight``.
        """
        return self.loss_weight * self.loss(student, teacher, teacher_is_prob)

    def loss(self, student: torch.Tensor, teacher: TensorOrList,
             teacher_is_prob: bool = False) -> torch.Tensor:
        peers = self._stack(student, teacher)
        peer_p = peers.detach().float()
        if not teacher_is_prob:
            peer_p = tempered_softmax(peer_p, self.tau, dim=-1)
        if self.ensemble:
            peer_p = peer_p.mean(dim=0, keepdim=True)
        log_p = tempered_log_softmax(student, self.tau).unsqueeze(0)
        if self.form == 'kl':
            div = _batch_mean_kl(peer_p, log_p)
        else:
            p = log_p.exp()
            # Clamped before the log: where both probabilities underflow to 0 the log's
            # gradient would be 0 / 0.
            log_m = torch.log(((peer_p + p) / 2).clamp_min(torch.finfo(p.dtype).tiny))
            # The member's own term takes its log-probabilities: exact in the tail, and the
            # gradient of p log p stays finite where p underflows.
            div = 0.5 * _batch_mean_kl(peer_p, log_m) + 0.5 * _batch_mean_kl(log_p, log_m, True)
        return div.mean() * self.tau**2

    def _stack(self, student: torch.Tensor, teacher: TensorOrList) -> torch.Tensor:
        if isinstance(teacher, torch.Tensor):
            peers = teacher.unsqueeze(0) if teacher.dim() == student.dim() else teacher
        else:
            if len(teacher) == 0:
                raise ValueError('DMLLoss needs at least one peer; a cohort has K >= 2 members.')
            shapes = {tuple(t.shape) for t in teacher}
            if len(shapes) != 1:
                raise ShapeMismatchError(type(self).__name__, student.shape, sorted(shapes)[0],
                                         f'peers of one shape; got {sorted(shapes)}')
            peers = torch.stack(list(teacher))
        if student.dim() != 2 or tuple(peers.shape[1:]) != tuple(student.shape):
            raise ShapeMismatchError(type(self).__name__, student.shape, peers.shape[1:],
                                     'class scores of shape (N, C) for the member and '
                                     'each peer')
        return peers


def _batch_mean_kl(target: torch.Tensor, log_q: torch.Tensor,
                   target_is_log: bool = False) -> torch.Tensor:
    """KL(target || q) of each peer, (P, N, C) -> (P,), averaged over the batch."""
    target = target.expand(torch.broadcast_shapes(target.shape, log_q.shape))
    return kl_divergence(target, log_q, dim=-1, target_is_log=target_is_log).mean(-1)
