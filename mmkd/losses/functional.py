r"""The divergences the losses share, as pure functions.

Every loss that compares distributions computes its Kullback-Leibler
divergence with :func:`kl_divergence`, so the formula, the handling of
:math:`0 \log 0` and the guard against round-off below zero live in one
place. :func:`tempered_log_softmax` / :func:`tempered_softmax` soften logits
at a temperature in fp32, :func:`standardize_logits` z-scores logits for
the ``logit_standardization`` option of the softmax-based losses, and
:func:`paired` turns "a tensor or a list of tensors" on each side into
matching pairs.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .base import ShapeMismatchError, TensorOrList

REDUCTIONS = ('none', 'sum', 'batchmean', 'mean')


def tempered_log_softmax(logits: torch.Tensor, tau: float, dim: int = 1) -> torch.Tensor:
    r"""Log-probabilities of logits softened at temperature :math:`\tau`, in fp32.

    .. math::
        \log \mathrm{softmax}(z / \tau)_i = \frac{z_i}{\tau} - \log \sum_j \exp(z_j / \tau)

    Args:
        logits: Logits :math:`z` of any floating dtype (cast to fp32 first,
            so the result is the same under autocast).
        tau: Temperature :math:`\tau > 0`.
        dim: The class dimension.

    Returns:
        fp32 log-probabilities, shape of ``logits``.
    """
    return F.log_softmax(logits.float() / tau, dim=dim)


def tempered_softmax(logits: torch.Tensor, tau: float, dim: int = 1) -> torch.Tensor:
    r"""Probabilities :math:`\mathrm{softmax}(z / \tau)` along ``dim``, in fp32.

    Args:
        logits: Logits :math:`z` of any floating dtype (cast to fp32 first).
        tau: Temperature :math:`\tau > 0`.
        dim: The class dimension.

    Returns:
        fp32 probabilities that sum to one along ``dim``.
    """
    return F.softmax(logits.float() / tau, dim=dim)


def kl_divergence(target: torch.Tensor, log_q: torch.Tensor, dim: int = 1,
                  target_is_log: bool = False, reduction: str = 'none') -> torch.Tensor:
    r"""Kullback-Leibler divergence :math:`\mathrm{KL}(p \,\|\, q)` along ``dim``.

    .. math::
        \mathrm{KL}(p \,\|\, q) = \sum_i p_i \, (\log p_i - \log q_i)

    With ``target_is_log`` the target is given as :math:`\log p` and each
    term is :math:`e^{\log p_i} (\log p_i - \log q_i)` (exact for targets
    far in the tail); otherwise the target holds probabilities :math:`p`
    and each term is :math:`\mathrm{xlogy}(p_i, p_i) - p_i \log q_i`, with
    :math:`0 \log 0 = 0`. The terms are those of
    :func:`torch.nn.functional.kl_div` (``reduction='none'``), and
    ``'sum'`` / ``'batchmean'`` reduce them the way that function does, so
    ``reduction='batchmean'`` gives the very same value as
    ``F.kl_div(log_q, target, reduction='batchmean', log_target=...)``
    wherever that value is not negative.

    A KL is never negative, but the difference of nearly equal terms can
    round below zero where :math:`p \approx q`; the result is clamped at
    zero (each divergence for ``'none'``, the total for the reductions).

    Args:
        target: :math:`p` (or :math:`\log p` with ``target_is_log``).
        log_q: :math:`\log q`, broadcastable with ``target``.
        dim: The dimension that holds each distribution.
        target_is_log: ``target`` holds log-probabilities.
        reduction: ``'none'``: one divergence per distribution (``dim``
            summed away); ``'sum'``: their sum; ``'batchmean'``: the sum
            divided by the size of the first dimension (the batch);
            ``'mean'``: the mean over the distributions (unlike
            ``F.kl_div``'s ``'mean'``, which averages over elements).

    Returns:
        The divergences (``'none'``) or a scalar, never below zero.

    Example:
        >>> log_q = tempered_log_softmax(torch.randn(8, 10), tau=4.0)
        >>> log_p = tempered_log_softmax(torch.randn(8, 10), tau=4.0)
        >>> kl_divergence(log_p, log_q, target_is_log=True, reduction='batchmean')
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f'kl_divergence reduction must be one of {REDUCTIONS}; '
                         f'got {reduction!r}.')
    terms = F.kl_div(log_q, target, reduction='none', log_target=target_is_log)
    return _reduce_divergence_terms(terms, dim, reduction)


def smoothed_kl_divergence(target: torch.Tensor, q: torch.Tensor, eps: float, dim: int = 1,
                           reduction: str = 'none') -> torch.Tensor:
    r"""KL divergence with :math:`\epsilon` added to both distributions inside the log.

    .. math::
        \mathrm{KL}_\epsilon(p \,\|\, q) = \sum_i p_i \,
        \big(\log (p_i + \epsilon) - \log (q_i + \epsilon)\big)

    The form of the PKT authors' code (Passalis and Tefas, ECCV 2018,
    ``p * log((p + eps) / (q + eps))``), which keeps the log finite where a
    probability is zero. It approaches :math:`\mathrm{KL}(p \,\|\, q)` as
    :math:`\epsilon \to 0`; for :math:`\epsilon > 0` it can fall below
    zero where :math:`p \approx q` (by at most :math:`\log(1 + K \epsilon)`,
    :math:`K` outcomes), and like :func:`kl_divergence` the result is
    clamped at zero.

    Args:
        target: Probabilities :math:`p`.
        q: Probabilities :math:`q` (not their log), broadcastable with ``target``.
        eps: :math:`\epsilon \ge 0`.
        dim: The dimension that holds each distribution.
        reduction: As for :func:`kl_divergence`.

    Returns:
        The divergences (``'none'``) or a scalar, never below zero.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f'smoothed_kl_divergence reduction must be one of {REDUCTIONS}; '
                         f'got {reduction!r}.')
    if eps < 0:
        raise ValueError(f'smoothed_kl_divergence needs eps >= 0; got {eps}.')
    terms = target * (torch.log(target + eps) - torch.log(q + eps))
    return _reduce_divergence_terms(terms, dim, reduction)


def _reduce_divergence_terms(terms: torch.Tensor, dim: int, reduction: str) -> torch.Tensor:
    """Elementwise KL terms summed per distribution or reduced, clamped at zero."""
    if reduction == 'none':
        return terms.sum(dim).clamp_min(0)
    total = terms.sum()
    if reduction == 'batchmean':
        total = total / terms.shape[0]
    elif reduction == 'mean':
        total = total / (terms.numel() // terms.shape[dim])
    return total.clamp_min(0)


def binary_kl_divergence(target_logits: torch.Tensor, logits: torch.Tensor,
                         reduction: str = 'none') -> torch.Tensor:
    r"""KL between the Bernoulli distributions of sigmoid scores, element for element.

    With :math:`p = \sigma(t)` (the target) and :math:`q = \sigma(z)`:

    .. math::
        \mathrm{KL}(p \,\|\, q) = p \log \frac{p}{q} + (1 - p) \log \frac{1 - p}{1 - q}

    Each element is a two-outcome distribution with log-probabilities
    :math:`(\log \sigma(x), \log \sigma(-x))`, compared by
    :func:`kl_divergence` (log target, so no :math:`\log 0` arises for
    saturated scores, and no value below zero).

    Args:
        target_logits: Logits :math:`t` of the target.
        logits: Logits :math:`z`, broadcastable with ``target_logits``.
        reduction: As for :func:`kl_divergence`, over the elements:
            ``'none'`` keeps one divergence per element, ``'batchmean'``
            divides the sum by the size of the first dimension.

    Returns:
        The divergences (``'none'``, the broadcast shape of the inputs) or a scalar.
    """
    if reduction == 'batchmean' and torch.broadcast_shapes(target_logits.shape,
                                                           logits.shape) == ():
        raise ValueError("binary_kl_divergence reduction 'batchmean' needs a batch "
                         'dimension; got 0-dim logits.')
    return kl_divergence(_bernoulli_log_probs(target_logits), _bernoulli_log_probs(logits),
                         dim=-1, target_is_log=True, reduction=reduction)


def _bernoulli_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """``(log sigmoid(x), log sigmoid(-x))`` on a new last dimension."""
    return torch.stack([F.logsigmoid(logits), F.logsigmoid(-logits)], dim=-1)


#: The constant the authors of logit standardisation add to the standard deviation.
STANDARDIZATION_EPS = 1e-7


def standardize_logits(logits: torch.Tensor, eps: float = STANDARDIZATION_EPS,
                       dim: int = 1) -> torch.Tensor:
    r"""Z-score of logits over the classes, in fp32 (Sun et al., CVPR 2024).

    "Logit Standardization in Knowledge Distillation" feeds each net's
    logits through

    .. math::
        \mathcal{Z}(z)_i = \frac{z_i - \bar{z}}{\sigma(z) + \epsilon}, \qquad
        \bar{z} = \frac{1}{K} \sum_{j=1}^{K} z_j, \qquad
        \sigma(z) = \sqrt{\frac{1}{K - 1} \sum_{j=1}^{K} (z_j - \bar{z})^2}

    before the temperature softmax, so that the student matches the
    teacher's logit *relations*, not their range. :math:`\sigma` is the
    unbiased standard deviation (``torch.std``, as in the authors' code; the
    paper writes :math:`1/K`, a factor :math:`\sqrt{K / (K - 1)}` on the
    effective temperature). Gradients flow through the mean and the
    standard deviation.

    Args:
        logits: Logits :math:`z`, any floating dtype (computed in fp32).
        eps: :math:`\epsilon`, keeps constant logits finite (they map to 0).
        dim: The class dimension.

    Returns:
        fp32 standardised logits, shape of ``logits``: mean 0 and standard
        deviation (nearly) 1 along ``dim``.
    """
    return z_score(logits.float(), dim, eps)


def z_score(x: torch.Tensor, dim: Union[int, Sequence[int]], eps: float) -> torch.Tensor:
    r""":math:`(x - \mu) / (\sigma + \epsilon)` with the mean :math:`\mu` and the
    unbiased standard deviation :math:`\sigma` over ``dim`` (one dimension or
    several): the one standardisation behind :func:`standardize_logits` (over
    the classes) and :func:`~mmkd.losses.pkd.standardize_channels` (each
    channel over the batch and positions)."""
    mean = x.mean(dim, keepdim=True)
    std = x.std(dim, keepdim=True)
    return (x - mean) / (std + eps)


def softmax_logits(logits: torch.Tensor, standardize: bool) -> torch.Tensor:
    """The logits a softmax-based loss compares: fp32, z-scored when asked.

    The one switch behind the ``logit_standardization`` option of
    :class:`KDLoss`, :class:`DKDLoss`, :class:`DISTLoss` and
    :class:`MultiTeacherKDLoss`; each applies it to every net's logits
    (class dimension 1) before its temperature.

    Args:
        logits: Logits with classes on dimension 1.
        standardize: Apply :func:`standardize_logits`.

    Returns:
        fp32 logits.
    """
    return standardize_logits(logits) if standardize else logits.float()


def tensor_list(value: TensorOrList) -> List[torch.Tensor]:
    """One tensor as a list of one; a sequence of tensors as a list.

    Nested sequences are flattened in order, so a list reference that joins
    a list record and a tensor record (ReviewKD's
    ``['teacher.feats', 'teacher.pooled']``: the stage features, then the
    pooled level) gives one list of tensors.

    Args:
        value: A tensor or a (possibly nested) sequence of tensors.

    Returns:
        A new flat list of the tensors.
    """
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for item in value for t in tensor_list(item)]


def paired(student: TensorOrList, teacher: TensorOrList, loss_name: str,
           items: str = 'values') -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Student and teacher values, each a tensor or a list of tensors, as pairs.

    Args:
        student: The student's tensor or list of tensors.
        teacher: The teacher's, as many as the student's.
        loss_name: Name of the calling loss, for errors.
        items: What the values are, plural (``'features'``, ``'levels'``),
            for errors.

    Returns:
        ``[(s_1, t_1), ..., (s_n, t_n)]`` in the given order.

    Raises:
        ShapeMismatchError: The two sides hold different numbers of tensors.
    """
    students, teachers = tensor_list(student), tensor_list(teacher)
    if len(students) != len(teachers):
        raise ShapeMismatchError(loss_name, (len(students), ), (len(teachers), ),
                                 f'as many student as teacher {items}')
    return list(zip(students, teachers))


def class_indices(data_samples: Optional[Sequence], who: str) -> Optional[torch.Tensor]:
    """One ground-truth class per sample, ``(N, )`` long, from each data
    sample's ``gt_label``; ``None`` when there are no samples or one has no
    ``gt_label`` (the caller decides whether that is an error).

    Args:
        data_samples: The batch's data samples (mmpretrain ``DataSample``).
        who: Who needs the classes, for the error message.

    Raises:
        ValueError: A sample's ``gt_label`` holds more than one class (soft or
            multi-label targets such as Mixup's).
    """
    if not data_samples:
        return None
    labels = []
    for i, sample in enumerate(data_samples):
        label = getattr(sample, 'gt_label', None)
        if label is None:
            return None
        label = torch.as_tensor(label)
        if label.numel() != 1:
            raise ValueError(f'{who} needs one ground-truth class per sample '
                             f'(DataSample.gt_label); sample {i} has {label!r} (soft or '
                             'multi-label targets such as Mixup\'s are not supported).')
        labels.append(label.reshape(1))
    return torch.cat(labels).long()

