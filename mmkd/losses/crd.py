"""Contrastive representation distillation (Tian, Krishnan, Isola, ICLR 2020)."""
import logging
from typing import Optional, Sequence

import torch
from mmengine import dist
from mmengine.logging import print_log

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError
from .contrast_memory import NEGATIVE_MODES, ContrastMemory
from .functional import class_indices

#: The authors' epsilon in the NCE posteriors.
NCE_EPS = 1e-7


def nce_loss(probs: torch.Tensor, num_samples: int, eps: float = NCE_EPS) -> torch.Tensor:
    r"""NCE loss of a batch whose column 0 is the positive and the others negatives.

    With :math:`P` the (normalised) model probabilities ``probs`` of shape
    ``(B, K + 1)`` and the noise distribution uniform over the :math:`N`
    training samples, :math:`h = P / (P + K / N)` is the posterior that a
    pair is drawn from the data rather than from the noise, and

    .. math::
        \mathcal{L} = -\frac{1}{B} \sum_{b} \Big[ \log \frac{P_{b0}}{P_{b0} + K/N + \epsilon}
        + \sum_{k=1}^{K} \log \frac{K/N}{P_{bk} + K/N + \epsilon} \Big]
    """
    num_negatives = probs.shape[1] - 1
    noise = num_negatives / num_samples
    positive = probs[:, 0]
    log_data = torch.log(positive / (positive + noise + eps))
    log_noise = torch.log(noise / (probs[:, 1:] + noise + eps))
    return -(log_data.sum() + log_noise.sum()) / probs.shape[0]


def contrast_scores(anchors: torch.Tensor, bank: torch.Tensor, rows: torch.Tensor,
                    keep_bank: bool) -> torch.Tensor:
    """``<bank[rows[b, k]], anchors[b]>``, shape ``(B, K + 1)``.

    Two ways to the same numbers, whichever holds less memory for the
    backward pass: the rows are gathered (``B (K + 1) D`` values, the
    authors' way), or every score is one matrix product (``B N`` values and
    their gradient) from which the pairs are picked; the product needs the
    bank itself for the backward pass, so with ``keep_bank`` (the bank is
    updated in place before the backward pass) it works on a copy
    (``N D`` values).
    """
    (batch, pairs), (num_samples, dim) = rows.shape, bank.shape
    if num_samples * (2 * batch + (dim if keep_bank else 0)) < batch * pairs * dim:
        bank = bank.clone() if keep_bank else bank
        return (anchors @ bank.t()).gather(1, rows)
    return torch.bmm(bank[rows], anchors.unsqueeze(2)).squeeze(2)


def sample_indices(data_samples: Sequence, num_samples: int,
                   device: torch.device) -> torch.Tensor:
    """The ``sample_idx`` of each data sample (mmpretrain's ``PackInputs`` keeps
    it: the index into the training set, after ``indices`` subsetting)."""
    indices = []
    for sample in data_samples:
        index = sample.metainfo.get('sample_idx') if hasattr(sample, 'metainfo') else None
        if index is None:
            raise ValueError(
                "CRDLoss needs each data sample's dataset index: keep 'sample_idx' in "
                'the meta_keys of the pipeline\'s PackInputs (it is there by default).')
        indices.append(int(index))
    indices = torch.tensor(indices, dtype=torch.long, device=device)
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= num_samples):
        raise ValueError(
            f'CRDLoss has a memory of num_samples={num_samples} rows but a batch holds '
            f'sample_idx {int(indices.max())}: set num_samples to the size of the training '
            'set (after its `indices`).')
    return indices


@MODELS.register_module()
class CRDLoss(BaseDistillLoss):
    r"""CRD: an NCE objective between student and teacher embeddings, with memories.

    Student and teacher embeddings :math:`s_i, t_i` (unit vectors of size
    :math:`D`, from :class:`~mmkd.connectors.EmbedConnector`) of a batch
    are contrasted with two memory banks (:class:`ContrastMemory`):
    :math:`m^T` (the teacher's embeddings of all :math:`N` training samples)
    and :math:`m^S` (the student's). For the student anchor :math:`s_i`, row
    :math:`i` of :math:`m^T` is the positive and :math:`K` other rows
    (negatives from other classes, drawn each step) are the negatives:

    .. math::
        P(j \mid s_i) = \frac{\exp(\langle m^T_j, s_i \rangle / \tau)}{Z_S}, \qquad
        h(j \mid s_i) = \frac{P(j \mid s_i)}{P(j \mid s_i) + K / N}

    .. math::
        \mathcal{L}_S = -\frac{1}{B} \sum_{i=1}^{B} \Big[\log h(i \mid s_i)
        + \sum_{j \in \mathrm{neg}(i)} \log\big(1 - h(j \mid s_i)\big)\Big]

    (with the authors' :math:`\epsilon = 10^{-7}` in the denominators,
    :func:`nce_loss`); :math:`\mathcal{L}_T` is the same with the teacher's
    anchors :math:`t_i` against :math:`m^S` and :math:`Z_T`. The constants
    :math:`Z = N \cdot \mathrm{mean}\,\exp(\langle m_j, v_i \rangle / \tau)`
    are estimated once, on the first training batch (all :math:`B (K + 1)`
    pairs; averaged over processes), and kept. The loss is

    .. math::
        \mathcal{L}_{CRD} = \beta (\mathcal{L}_S + \mathcal{L}_T)

    After the scores, the memories take the batch's embeddings (momentum
    :math:`\mu`, :meth:`ContrastMemory.update`). Gradients reach the student
    (and its embedding head) through :math:`\mathcal{L}_S` and the teacher's
    embedding head through :math:`\mathcal{L}_T`; memories are constants.

    The dataset index of each anchor is its data sample's ``sample_idx``
    (``data_samples`` must be given in training). Without data samples (the
    distiller's build-time dry run: indices ``0..B-1``) or outside training,
    the loss is computed with uniform negatives and, before the first
    training step, a provisional :math:`Z`; nothing is stored or learnt.

    Fidelity: docs/fidelity.md#crd

    Args:
        num_samples: :math:`N`, the size of the training set (the memory rows).
        num_negatives: :math:`K` (the paper: 16384).
        temperature: :math:`\tau` (0.07).
        momentum: :math:`\mu` of the memory update (0.5).
        feat_dim: :math:`D`, the embedding size (128).
        negatives: ``'other_classes'`` (the paper's CIFAR-100 results; the
            training set's labels come from
            :class:`~mmkd.engine.hooks.ContrastMemoryHook`, else they are
            learnt from the batches, with a warning) or ``'uniform'``.
        replacement: Draw negatives with replacement (the authors' ImageNet
            code). Without it (their CIFAR-100 code), an anchor whose class
            leaves fewer than :math:`K` other samples is still drawn with
            replacement.
        loss_weight: :math:`\beta` (0.8, the paper's).

    Example:
        >>> loss = CRDLoss(num_samples=100, num_negatives=16, negatives='uniform')
        >>> s, t = F.normalize(torch.randn(4, 128)), F.normalize(torch.randn(4, 128))
        >>> value = loss(s, t)  # no data samples: dry-run indices, nothing stored
    """

    def __init__(self, num_samples: int, num_negatives: int = 16384, temperature: float = 0.07,
                 momentum: float = 0.5, feat_dim: int = 128, negatives: str = 'other_classes',
                 replacement: bool = False, loss_weight: float = 0.8):
        super().__init__(loss_weight)
        if negatives not in NEGATIVE_MODES:
            raise ValueError(f'CRDLoss negatives must be one of {NEGATIVE_MODES}; got '
                             f'{negatives!r}.')
        if num_negatives < 1 or temperature <= 0:
            raise ValueError(f'CRDLoss needs num_negatives >= 1 and temperature > 0; got '
                             f'{num_negatives} and {temperature}.')
        self.num_samples = num_samples
        self.num_negatives = num_negatives
        self.temperature = temperature
        self.negatives = negatives
        self.replacement = replacement
        self.memory = ContrastMemory(num_samples, feat_dim, momentum)
        # Z_S (student anchors) and Z_T (teacher anchors); negative until estimated.
        self.register_buffer('z', torch.full((2, ), -1.0))
        self._warned = False

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                data_samples: Optional[Sequence] = None) -> torch.Tensor:
        return self.loss_weight * self.loss(student, teacher, data_samples)

    def loss(self, student: torch.Tensor, teacher: torch.Tensor,
             data_samples: Optional[Sequence] = None) -> torch.Tensor:
        self._check_shapes(student, teacher)
        device = student.device
        batch = student.shape[0]
        store = self.training and data_samples is not None
        with torch.autocast(device_type=device.type, enabled=False):
            student, teacher = student.float(), teacher.float()
            if data_samples is None:
                indices = torch.arange(batch, device=device) % self.num_samples
            else:
                indices = sample_indices(data_samples, self.num_samples, device)
            negatives = self._negatives(indices, data_samples, store)
            rows = torch.cat([indices.unsqueeze(1), negatives], 1)
            exp_s = torch.exp(contrast_scores(student, self.memory.teacher, rows, store)
                              / self.temperature)
            exp_t = torch.exp(contrast_scores(teacher, self.memory.student, rows, store)
                              / self.temperature)
            z = self._normalisers(exp_s, exp_t, store)
            loss = (nce_loss(exp_s / z[0], self.num_samples)
                    + nce_loss(exp_t / z[1], self.num_samples))
        if store:
            self.memory.update(indices, student, teacher)
        return loss

    def _check_shapes(self, student: torch.Tensor, teacher: torch.Tensor) -> None:
        dim = self.memory.feat_dim
        if student.dim() != 2 or student.shape != teacher.shape or student.shape[1] != dim:
            raise ShapeMismatchError(
                type(self).__name__, student.shape, teacher.shape,
                f'(N, {dim}) embeddings on both sides (feat_dim={dim}; map pooled features '
                f'with connectors of type EmbedConnector, out_channels={dim})')

    def _negatives(self, indices: torch.Tensor, data_samples, store: bool) -> torch.Tensor:
        mode, labels = self.negatives, None
        if data_samples is None:
            generator = torch.Generator(device=indices.device)
            generator.manual_seed(0)
        else:
            generator = self.memory.generator(indices.device)
        if not store:
            mode = 'uniform'  # the dry run or evaluation: nothing learnt, nothing stored
        if mode == 'other_classes':
            labels = self._learn_labels(indices, data_samples)
        return self.memory.draw_negatives(len(indices), labels, self.num_negatives, mode,
                                          self.replacement, generator)

    def _learn_labels(self, indices: torch.Tensor, data_samples: Sequence) -> torch.Tensor:
        """The anchors' classes; the memory learns them from the batch when
        :class:`ContrastMemoryHook` did not give it the training set's."""
        given = class_indices(data_samples, 'CRDLoss')
        if given is not None:
            given = given.to(indices)
        complete = self.memory.labels_complete
        if not complete:
            if given is None:
                raise RuntimeError(
                    "CRDLoss(negatives='other_classes') needs the training set's labels: add "
                    "dict(type='ContrastMemoryHook') to custom_hooks (or give the data samples "
                    "gt_label), or use negatives='uniform'.")
            if not self._warned:
                self._warned = True
                print_log(
                    'CRDLoss: no ContrastMemoryHook, so the memory learns the labels from the '
                    'batches; until every training image has been seen once, the ones not yet '
                    'seen can be negatives of their own class. Add '
                    "dict(type='ContrastMemoryHook') to custom_hooks for the authors' sampling "
                    'from the first step.', logger='current', level=logging.WARNING)
        known = self.memory.labels[indices]
        if given is not None and not torch.equal(given[known >= 0], known[known >= 0]):
            raise ValueError(
                'CRDLoss: the labels the memory holds for these samples (from '
                "ContrastMemoryHook or earlier batches) differ from the batch's gt_label at the "
                "same sample_idx; the dataset's sample_idx must index the dataset itself (a "
                'ConcatDataset restarts it in each part).')
        if not complete:
            self.memory.learn_labels(indices, given)
        return self.memory.labels[indices]

    def _normalisers(self, exp_s: torch.Tensor, exp_t: torch.Tensor,
                     store: bool) -> torch.Tensor:
        """``(Z_S, Z_T)``: stored ones, or estimated on this batch (and stored on the
        first training step, averaged over processes)."""
        if float(self.z[0]) > 0:
            return self.z
        estimate = torch.stack([exp_s.mean(), exp_t.mean()]).detach() * self.num_samples
        if not store:
            return estimate
        dist.all_reduce(estimate, op='mean')
        self.z.copy_(estimate)
        print_log(f'CRDLoss: normalisation constants Z_S = {float(estimate[0]):.1f}, Z_T = '
                  f'{float(estimate[1]):.1f} (estimated on the first batch)', logger='current')
        return self.z

    def extra_repr(self) -> str:
        return (f'num_samples={self.num_samples}, num_negatives={self.num_negatives}, '
                f'temperature={self.temperature}, negatives={self.negatives!r}, '
                f'replacement={self.replacement}, loss_weight={self.loss_weight}')
