"""Pixel-wise distillation of segmentation logits (Liu et al., CVPR 2019)."""
from typing import Optional, Sequence

import torch

from mmkd.registry import MODELS

from .base import BaseDistillLoss
from .dense import RESIZE_MODES, match_sizes, valid_mask
from .functional import kl_divergence, tempered_log_softmax

#: How the summed divergences are normalised: by the map's H * W, or by the pixels counted.
NORMALIZATIONS = ('spatial', 'pixels')


@MODELS.register_module()
class PixelWiseKDLoss(BaseDistillLoss):
    r"""Hinton's KD applied at every pixel of a segmentation map.

    From "Structured Knowledge Distillation for Semantic Segmentation"
    (Liu et al., CVPR 2019), pixel-wise distillation: each pixel is a
    classification problem and the student matches the teacher's
    temperature-softened class distribution there.

    .. math::
        \mathcal{L}_{pi} = \frac{\tau^2}{H W} \sum_{(n, i) \in P}
        \mathrm{KL}\big(\mathrm{softmax}(z^t_{n,i} / \tau) \,\|\,
        \mathrm{softmax}(z^s_{n,i} / \tau)\big),
        \qquad P = \{(n, i) : y_{n,i} \neq \text{ignore}\}

    with :math:`z_{n,i}` the class logits of image :math:`n` at pixel
    :math:`i` of the :math:`H \times W` logit map and :math:`y` the label
    map (nearest-sampled to the logits' size). The divergences are summed
    over the batch's pixels and divided by :math:`H W`
    (``normalize='spatial'``), as the official structured-KD code
    (``CriterionPixelWise``: sum over :math:`N H W` pixels, ``/W/H``): the
    term is :math:`N` times the per-pixel mean, and the paper's weight
    :math:`\lambda_1 = 10` applies to it. Under data parallelism each
    process normalises its own batch (the official ``DataParallelCriterion``
    does the same per GPU). ``normalize='pixels'`` divides by :math:`|P|`
    instead (the per-pixel mean; mmkd's form before issue #19, :math:`N`
    times weaker at the same weight).

    Pixels with the ignore label (255 in VOC: object borders and padding)
    are left out (the official code counts them; ``ignore_index=None``
    does too). Without labels (the distiller's dry run) every pixel counts.
    Logits of different sizes are first brought to one size (see
    ``resize``). Computed in fp32. The official code writes the term as a
    cross-entropy :math:`-\sum p^t \log p^s` at :math:`\tau = 1`: it
    differs from the KL by the teacher's entropy, a constant for the
    student (same gradient).

    Fidelity: docs/fidelity.md#pixel-wise-kd

    Labels come from the batch's ``data_samples`` (mmseg ``SegDataSample``
    with ``gt_sem_seg``), which the distiller passes to any loss whose
    ``forward`` has that argument.

    Args:
        tau: Temperature :math:`\tau`.
        ignore_index: Label of the pixels to leave out; ``None`` uses all.
        resize: ``'larger'``, ``'student'`` or ``'teacher'``: the size at
            which logits of different sizes are compared.
        normalize: ``'spatial'`` (divide the batch's sum by :math:`H W`,
            the official code) or ``'pixels'`` (by the number of pixels
            counted).
        loss_weight: Factor on the loss.

    Example:
        >>> loss = PixelWiseKDLoss(tau=1.0)
        >>> loss(torch.randn(2, 21, 8, 8), torch.randn(2, 21, 16, 16))
    """

    def __init__(self, tau: float = 1.0, ignore_index: Optional[int] = 255,
                 resize: str = 'larger', normalize: str = 'spatial', loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if tau <= 0:
            raise ValueError(f'PixelWiseKDLoss tau must be positive; got {tau}.')
        if resize not in RESIZE_MODES:
            raise ValueError(f'PixelWiseKDLoss resize must be one of {RESIZE_MODES}; '
                             f'got {resize!r}.')
        if normalize not in NORMALIZATIONS:
            raise ValueError(f'PixelWiseKDLoss normalize must be one of {NORMALIZATIONS}; '
                             f'got {normalize!r}.')
        self.tau = tau
        self.ignore_index = ignore_index
        self.resize = resize
        self.normalize = normalize

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                data_samples: Optional[Sequence] = None) -> torch.Tensor:
        return self.loss_weight * self.loss(student, teacher, data_samples)

    def loss(self, student: torch.Tensor, teacher: torch.Tensor,
             data_samples: Optional[Sequence] = None) -> torch.Tensor:
        student, teacher = match_sizes(student.float(), teacher.float(),
                                       type(self).__name__, self.resize)
        log_p_s = tempered_log_softmax(student, self.tau)
        log_p_t = tempered_log_softmax(teacher, self.tau)
        kl = kl_divergence(log_p_t, log_p_s, target_is_log=True)  # (N, H, W)
        mask = valid_mask(data_samples, self.ignore_index, tuple(kl.shape[-2:]), kl.device)
        # An all-ignored batch gives 0, still attached to the graph.
        if self.normalize == 'pixels':
            if mask is None:
                return kl.mean() * self.tau**2
            return (kl * mask).sum() / mask.sum().clamp_min(1) * self.tau**2
        total = kl.sum() if mask is None else (kl * mask).sum()
        return total / (kl.shape[-2] * kl.shape[-1]) * self.tau**2

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, ignore_index={self.ignore_index}, resize={self.resize!r}, '
                f'normalize={self.normalize!r}, loss_weight={self.loss_weight}')
