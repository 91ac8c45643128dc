"""Masked generation of MGD (Yang et al., ECCV 2022): the student feature, masked at random,
must generate the teacher's whole feature."""
from typing import Optional

import torch
from torch import nn

from mmkd.registry import MODELS

from .base import BaseConnector

#: How the random mask is drawn: one value per position, or one per channel.
MASK_MODES = ('spatial', 'channel')


@MODELS.register_module()
class MGDConnector(BaseConnector):
    r"""Aligns, masks at random and generates: MGD's student side.

    From "Masked Generative Distillation" (Yang et al., ECCV 2022). The
    student's feature :math:`S` is aligned to the teacher's width by a 1x1
    convolution (only when the widths differ), a random mask :math:`M`
    zeroes a ratio :math:`\lambda` of it, and a generation block
    :math:`\mathcal{G}` (3x3 conv, ReLU, 3x3 conv, at the teacher's width)
    must produce the teacher's *whole* feature :math:`T`:

    .. math::
        \mathcal{L}_{MGD} = \frac{\alpha}{N} \sum_{n,c,h,w}
            \big(\mathcal{G}(f_{align}(S) \odot M) - T\big)^2_{n,c,h,w},
        \qquad M = 0 \text{ with probability } \lambda

    The sum over the batch divided by :math:`N` and the weight
    :math:`\alpha` are :class:`~mmkd.losses.MSELoss` with
    ``reduction='batchmean'`` and ``loss_weight=alpha``: this connector is
    :math:`\mathcal{G}(f_{align}(S) \odot M)`. The mask is ``(N, 1, H, W)``
    (``mask='spatial'``: detection and segmentation in the authors' code)
    or ``(N, C, 1, 1)`` (``mask='channel'``: their classification code),
    drawn from torch's global generator on every training forward; in eval
    mode nothing is masked (the loss is a training loss; tools that draw
    the connector's output then see the generation from the whole feature).
    Defaults are the authors': PyTorch's default initialisation, biases on
    every convolution.

    Fidelity: docs/fidelity.md#mgd

    Args:
        in_channels: Student channels.
        out_channels: Teacher channels.
        mask: ``'spatial'`` or ``'channel'``.
        mask_ratio: :math:`\lambda`, the share masked (0.65 detection, 0.75
            segmentation, 0.15 for their ImageNet ResNet-18 student).
        init_cfg: MMEngine init config.

    Example:
        >>> connectors = dict(gen=dict(type='MGDConnector', input='student.c5',
        ...                            like='teacher.c5', mask_ratio=0.75))
        >>> losses = dict(loss_mgd=dict(type='MSELoss', student='gen', teacher='c5',
        ...                             reduction='batchmean', loss_weight=2e-5))
    """

    def __init__(self, in_channels: int, out_channels: int, mask: str = 'spatial',
                 mask_ratio: float = 0.65, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if mask not in MASK_MODES:
            raise ValueError(f'MGDConnector mask must be one of {MASK_MODES}; got {mask!r}.')
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f'MGDConnector mask_ratio is the share masked, in [0, 1); got '
                             f'{mask_ratio}.')
        self.mask = mask
        self.mask_ratio = float(mask_ratio)
        self.align = (nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels
                      else nn.Identity())
        self.generation = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1))

    def random_mask(self, x: torch.Tensor) -> torch.Tensor:
        """A 0 / 1 mask broadcastable to ``x``, 0 with probability ``mask_ratio``
        (drawn as the authors draw it, so that a seeded run draws their masks)."""
        n, c, h, w = x.shape
        if self.mask == 'spatial':
            draw = torch.rand((n, 1, h, w), device=x.device)
            keep = draw <= 1 - self.mask_ratio  # theirs: where(mat > 1 - lambda, 0, 1)
        else:
            draw = torch.rand((n, c, 1, 1), device=x.device)
            keep = draw >= self.mask_ratio  # theirs: where(mat < lambda, 0, 1)
        return keep.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f'MGDConnector takes (N, C, H, W) features; got shape '
                             f'{tuple(x.shape)}.')
        x = self.align(x)
        if self.training and self.mask_ratio > 0:
            x = x * self.random_mask(x)
        return self.generation(x)

    def extra_repr(self) -> str:
        return f'mask={self.mask!r}, mask_ratio={self.mask_ratio}'
