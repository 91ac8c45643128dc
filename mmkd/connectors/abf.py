"""Attention based fusion (ABF) of Knowledge Review (Chen et al., CVPR 2021)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from mmkd.registry import MODELS


@MODELS.register_module()
class ABF(nn.Module):
    r"""Fuses one student stage with the fused result of the deeper stages.

    .. math::
        x = \mathrm{BN}(W_{1 \times 1} s), \qquad
        [z_0, z_1] = \sigma\big(W_{att} [x, \mathrm{up}(r)]\big), \qquad
        x \leftarrow x \odot z_0 + \mathrm{up}(r) \odot z_1

    where :math:`s` is the student feature, :math:`r` the residual from the
    deeper ABF, resized (nearest) to :math:`s`'s size, and :math:`z_0, z_1`
    two one-channel attention maps. The fused :math:`x` is resized to the
    teacher's size and mapped to the teacher's width,
    :math:`y = \mathrm{BN}(W_{3 \times 3} x)`. The deepest ABF has no
    residual and does not fuse (in the authors' code it serves the pooled
    :math:`1 \times 1` level, so the next one fuses global context).
    The layers, their initialisation (``kaiming_uniform_(a=1)`` on both
    convolutions) and the nearest resizing are those of the authors' code.

    Fidelity: docs/fidelity.md#reviewkd

    Args:
        in_channels: Student channels of this stage.
        mid_channels: Channels of the fused (residual) path.
        out_channels: Teacher channels of this stage.
        fuse: Whether a deeper residual is fused in.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False),
                                    nn.BatchNorm2d(mid_channels))
        self.expand = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels))
        self.attention = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1),
                                       nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.reduce[0].weight, a=1)
        nn.init.kaiming_uniform_(self.expand[0].weight, a=1)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None,
                out_size: Optional[Tuple[int, int]] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(feature compared with the teacher, residual for the next ABF)``."""
        x = self.reduce(x)
        if self.attention is not None:
            if residual is None:
                raise ValueError('this ABF fuses a deeper residual; none was given.')
            residual = F.interpolate(residual, size=x.shape[-2:], mode='nearest')
            z = self.attention(torch.cat([x, residual], dim=1))
            x = x * z[:, :1] + residual * z[:, 1:]
        if out_size is not None and tuple(x.shape[-2:]) != tuple(out_size):
            x = F.interpolate(x, size=out_size, mode='nearest')
        return self.expand(x), x
