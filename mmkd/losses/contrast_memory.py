"""Memory banks of embeddings and the negatives drawn from them (CRD, Tian et al., 2020)."""
import math
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine import dist
from torch import nn

#: How negatives are drawn. ``'other_classes'``: from the samples of the other classes (the
#: authors' CIFAR-100 dataset, ``CIFAR100InstanceSample(mode='exact', is_sample=True)``, which
#: made the paper's CIFAR-100 tables); ``'uniform'``: from the whole training set (their
#: ``ContrastMemory`` when no negatives are given; it may draw the positive itself).
NEGATIVE_MODES = ('other_classes', 'uniform')


def gather_rows(*tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Each tensor's rows from every process, in rank order (the same on every rank).

    Batches may differ in size between ranks: they are padded for the
    exchange and cut back after it. Without a process group the tensors
    come back as they are.
    """
    if dist.get_world_size() == 1:
        return tensors
    sizes = [int(s) for s in dist.all_gather(
        torch.tensor([tensors[0].shape[0]], device=tensors[0].device))]
    gathered = []
    for tensor in tensors:
        padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
        padded[:tensor.shape[0]] = tensor
        gathered.append(torch.cat([part[:n] for part, n in zip(dist.all_gather(padded), sizes)]))
    return tuple(gathered)


class ContrastMemory(nn.Module):
    """One memory bank of embeddings per net, a row per training sample.

    ``student[i]`` and ``teacher[i]`` hold the momentum average of the
    L2-normalised embeddings the two nets gave sample ``i`` (its
    ``sample_idx``, the index into the training set). Rows start uniform
    in :math:`[-\\sigma, \\sigma]`, :math:`\\sigma = 1 / \\sqrt{D / 3}` (rows of
    about unit norm), as in the authors' ``ContrastMemory``; after each
    training step the rows of the batch become

    .. math::
        m_i \\leftarrow \\frac{\\mu m_i + (1 - \\mu) v_i}{\\| \\mu m_i + (1 - \\mu) v_i \\|_2}

    with the embeddings of every process (:func:`gather_rows`), so that all
    ranks hold the same banks.

    Everything a resumed run needs is a buffer, hence in the distiller's
    state dict and its checkpoints: both banks, the seed of the negative
    sampler and the number of steps taken. The training set's labels (for
    ``'other_classes'`` negatives) are a non-persistent buffer: they come
    from the dataset (:class:`~mmkd.engine.hooks.ContrastMemoryHook`) or,
    without it, from the batches as they come (:meth:`learn_labels`).

    Negatives are drawn by a generator seeded with ``(seed, step, rank)``:
    reproducible under the run's seed (``seed`` is drawn from torch's global
    generator when the memory is built, after the runner seeded it), the same
    after a resume as without one, and different on each rank.

    Args:
        num_samples: Rows :math:`N` (the size of the training set).
        feat_dim: Embedding size :math:`D`.
        momentum: :math:`\\mu`.
    """

    def __init__(self, num_samples: int, feat_dim: int = 128, momentum: float = 0.5):
        super().__init__()
        if num_samples < 1 or feat_dim < 1:
            raise ValueError(f'ContrastMemory needs num_samples and feat_dim >= 1; got '
                             f'{num_samples} and {feat_dim}.')
        if not 0 <= momentum < 1:
            raise ValueError(f'ContrastMemory momentum must be in [0, 1); got {momentum}.')
        self.num_samples = num_samples
        self.feat_dim = feat_dim
        self.momentum = momentum
        bound = 1.0 / math.sqrt(feat_dim / 3)
        self.register_buffer('student', torch.rand(num_samples, feat_dim) * 2 * bound - bound)
        self.register_buffer('teacher', torch.rand(num_samples, feat_dim) * 2 * bound - bound)
        self.register_buffer('seed', torch.randint(0, 2**62, (), dtype=torch.long))
        self.register_buffer('step', torch.zeros((), dtype=torch.long))
        # The class of each row (-1: not known yet), the rows sorted by class + 1 (unknown
        # first) and the size of each of those groups.
        self.register_buffer('labels', torch.full((num_samples, ), -1, dtype=torch.long),
                             persistent=False)
        self.register_buffer('_by_class', torch.arange(num_samples), persistent=False)
        self.register_buffer('_class_sizes', torch.tensor([num_samples]), persistent=False)

    @property
    def labels_complete(self) -> bool:
        """Whether the class of every row is known."""
        return bool((self.labels >= 0).all())

    @torch.no_grad()
    def set_labels(self, labels) -> None:
        """The class of every training sample, in dataset order (ints >= 0)."""
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).flatten()
        if labels.shape != (self.num_samples, ):
            raise ValueError(f'ContrastMemory has {self.num_samples} rows but got '
                             f'{labels.numel()} labels.')
        if len(labels) and int(labels.min()) < 0:
            raise ValueError('ContrastMemory labels must be class indices >= 0.')
        self.labels.copy_(labels)
        self._sort_by_class()

    @torch.no_grad()
    def learn_labels(self, indices: torch.Tensor, labels: torch.Tensor) -> None:
        """Record the classes of some rows (those of a batch)."""
        if not torch.equal(self.labels[indices], labels):
            self.labels[indices] = labels
            self._sort_by_class()

    def _sort_by_class(self) -> None:
        self._by_class = torch.argsort(self.labels + 1, stable=True)
        self._class_sizes = torch.bincount(self.labels + 1, minlength=1)

    def generator(self, device: torch.device) -> torch.Generator:
        """The generator of this step's negatives on this rank."""
        seed = np.random.SeedSequence([int(self.seed), int(self.step), dist.get_rank()])
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed.generate_state(1, np.uint64)[0]))
        return generator

    def draw_negatives(self, batch: int, anchor_labels: Optional[torch.Tensor], num: int,
                       mode: str, replacement: bool,
                       generator: torch.Generator) -> torch.Tensor:
        """``num`` negative rows for each of ``batch`` anchors, shape ``(batch, num)``.

        Args:
            batch: Anchors :math:`B`.
            anchor_labels: Class of each anchor, ``(B,)`` (only for
                ``'other_classes'``).
            num: Negatives per anchor :math:`K`.
            mode: One of :data:`NEGATIVE_MODES`.
            replacement: Draw with replacement. Without it (the authors'
                CIFAR code), an anchor whose class leaves fewer than ``num``
                other samples is drawn with replacement, as they do.
            generator: Source of randomness.
        """
        n = self.num_samples
        device = self.student.device
        if mode == 'uniform':
            return torch.randint(0, n, (batch, num), generator=generator, device=device)
        groups = anchor_labels + 1  # unknown rows are group 0, never an anchor's class
        sizes = self._class_sizes[groups]
        pool = n - sizes  # rows of other (or unknown) classes, for each anchor
        if int(pool.min()) < 1:
            raise ValueError('every training sample has the same class: no negatives from '
                             "other classes; use negatives='uniform'.")
        out = torch.empty(batch, num, dtype=torch.long, device=device)
        with_replacement = (pool < num) if not replacement else torch.ones_like(pool, dtype=bool)
        rows = (~with_replacement).nonzero().flatten()
        if len(rows):
            # Without replacement: the `num` smallest of uniform keys over the other classes.
            keys = torch.rand(len(rows), n, generator=generator, device=device)
            keys.masked_fill_(self.labels.unsqueeze(0) == anchor_labels[rows].unsqueeze(1), 2.0)
            out[rows] = keys.topk(num, dim=1, largest=False, sorted=True).indices
        rows = with_replacement.nonzero().flatten()
        if len(rows):
            # With replacement: uniform positions in the class-sorted rows with the anchor's
            # class cut out.
            starts = torch.cumsum(self._class_sizes, 0) - self._class_sizes
            u = torch.rand(len(rows), num, generator=generator, device=device)
            pos = (u * pool[rows].unsqueeze(1)).long().minimum(pool[rows].unsqueeze(1) - 1)
            pos = pos + (pos >= starts[groups[rows]].unsqueeze(1)) * sizes[rows].unsqueeze(1)
            out[rows] = self._by_class[pos]
        return out

    @torch.no_grad()
    def update(self, indices: torch.Tensor, student: torch.Tensor,
               teacher: torch.Tensor) -> None:
        """Momentum update of the rows ``indices`` with the batch's embeddings
        (of every process), then re-normalisation; other rows are unchanged.

        A sample that occurs more than once (DDP pads an epoch's last
        batches with repeats) is updated once, with its last occurrence.
        """
        indices, student, teacher = gather_rows(indices.long(), student.detach().float(),
                                                teacher.detach().float())
        rows, inverse = torch.unique(indices, return_inverse=True)
        last = torch.full_like(rows, -1).scatter_reduce_(
            0, inverse, torch.arange(len(indices), device=indices.device), 'amax')
        for bank, values in ((self.student, student), (self.teacher, teacher)):
            mixed = bank.index_select(0, rows) * self.momentum + values[last] * (
                1 - self.momentum)
            bank.index_copy_(0, rows, F.normalize(mixed, dim=1))
        self.step += 1

    def extra_repr(self) -> str:
        return (f'num_samples={self.num_samples}, feat_dim={self.feat_dim}, '
                f'momentum={self.momentum}')
