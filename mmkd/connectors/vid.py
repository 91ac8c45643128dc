"""The variational distribution of VID (Ahn et al., CVPR 2019): a regressor and a variance."""
import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mmkd.registry import MODELS

from .base import BaseConnector


class GaussianPrediction(NamedTuple):
    """A predicted Gaussian: its mean and variance, broadcastable to each other."""
    mean: torch.Tensor
    variance: torch.Tensor


@MODELS.register_module()
class VIDRegressor(BaseConnector):
    r"""Predicts a Gaussian over the teacher's feature from the student's.

    The variational distribution :math:`q(t \mid s) = \mathcal{N}(t;
    \mu(s), \sigma^2)` of VID: the mean is a regressor of three 1x1
    convolutions without bias (student width -> ``mid_channels`` -> ReLU ->
    ``mid_channels`` -> ReLU -> teacher width), the variance one learned
    value per teacher channel, shared by all positions and samples
    (heteroscedastic across channels, homoscedastic in space):

    .. math::
        \sigma_c^2 = \log(1 + e^{\alpha_c}) + \epsilon, \qquad
        \alpha_c^{(0)} = \log\big(e^{\sigma_0^2 - \epsilon} - 1\big)

    so that the variance is positive and starts at :math:`\sigma_0^2`. The
    widths, ``init_variance`` = 5 and :math:`\epsilon = 10^{-5}` are those
    of the code that RepDistiller took from the VID authors (the regressor's
    middle width is the teacher's; PyTorch's default conv initialisation).

    Both parts are learned with the student, saved in the distiller's
    checkpoint and left out of the exported student. The forward returns a
    :class:`GaussianPrediction` (mean (N, C_t, H, W), variance
    (1, C_t, 1, 1)), which :class:`~mmkd.losses.VIDLoss` scores against the
    teacher's feature; ``ConnectorList(connector=dict(type='VIDRegressor'))``
    makes one per stage.

    Args:
        in_channels: Student channels.
        out_channels: Teacher channels.
        mid_channels: Width of the hidden layers (the teacher's by default).
        init_variance: :math:`\sigma_0^2`, the variance at the start.
        eps: :math:`\epsilon`, the smallest variance.
        init_cfg: MMEngine init config.

    Example:
        >>> vid = VIDRegressor(16, 64)
        >>> mean, variance = vid(torch.rand(2, 16, 8, 8))
        >>> mean.shape, variance.shape
        (torch.Size([2, 64, 8, 8]), torch.Size([1, 64, 1, 1]))
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: Optional[int] = None,
                 init_variance: float = 5.0, eps: float = 1e-5, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if init_variance <= eps or eps < 0:
            raise ValueError(f'VIDRegressor needs init_variance > eps >= 0; got init_variance='
                             f'{init_variance}, eps={eps}.')
        mid = out_channels if mid_channels is None else mid_channels
        self.regressor = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), nn.ReLU(),
            nn.Conv2d(mid, mid, 1, bias=False), nn.ReLU(),
            nn.Conv2d(mid, out_channels, 1, bias=False))
        # Inverse softplus of init_variance - eps (expm1 keeps small variances exact).
        alpha = math.log(math.expm1(init_variance - eps))
        self.alpha = nn.Parameter(torch.full((out_channels, ), alpha))
        self.eps = eps

    def variance(self) -> torch.Tensor:
        """:math:`\\sigma^2`, one per teacher channel, shape (C_t,)."""
        return F.softplus(self.alpha) + self.eps

    def forward(self, x: torch.Tensor) -> GaussianPrediction:
        if x.dim() != 4:
            raise ValueError(f'VIDRegressor takes (N, C, H, W) features; got shape '
                             f'{tuple(x.shape)}.')
        return GaussianPrediction(self.regressor(x), self.variance().view(1, -1, 1, 1))

    def extra_repr(self) -> str:
        return f'eps={self.eps}'
