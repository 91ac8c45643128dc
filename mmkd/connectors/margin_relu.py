"""The teacher transform of OFD: ReLU with a negative margin (Heo et al., ICCV 2019)."""
import math
from typing import List, Optional, Sequence, Union

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmkd.registry import MODELS

from .base import BaseConnector, ConnectorConfigError, RecordFacts, channels_of

#: Below this probability of a negative response the margin is -3 s.
NEGATIVE_PROBABILITY_FLOOR = 1e-3


def margin_from_bn(bn: _BatchNorm) -> torch.Tensor:
    r"""Expected negative response of each channel after a BatchNorm.

    A BN output is modelled as :math:`x \sim \mathcal{N}(m, s^2)` with
    :math:`s = |\gamma|`, :math:`m = \beta`. The margin is

    .. math::
        \text{margin} = \mathbb{E}[x \mid x < 0]
        = m - s \, \frac{\phi(m / s)}{\Phi(-m / s)}
        \quad\text{if } \Phi(-m/s) > 0.001, \qquad -3s \text{ otherwise,}

    where :math:`\phi`, :math:`\Phi` are the standard normal density and
    distribution. A channel with :math:`s = 0` is the constant :math:`m`:
    its margin is :math:`\min(m, 0)`. Computed in float64.

    Args:
        bn: The BatchNorm that produces the pre-ReLU feature.

    Returns:
        Tensor of shape ``(C,)`` (on the BN's device, float32).
    """
    if not isinstance(bn, _BatchNorm):
        raise TypeError(f'margin_from_bn takes a BatchNorm module; got {type(bn).__name__}.')
    if bn.affine:
        s = bn.weight.detach().double().abs()
        m = bn.bias.detach().double()
    else:
        s = torch.ones(bn.num_features, dtype=torch.float64, device=bn.running_mean.device)
        m = torch.zeros_like(s)
    safe_s = torch.where(s > 0, s, torch.ones_like(s))
    z = m / safe_s
    p_negative = torch.special.ndtr(-z)
    density = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    expected = m - safe_s * density / p_negative.clamp_min(1e-300)
    margin = torch.where(p_negative > NEGATIVE_PROBABILITY_FLOOR, expected, -3 * s)
    margin = torch.where(s > 0, margin, m.clamp(max=0))
    return margin.float()


@MODELS.register_module()
class MarginReLU(BaseConnector):
    r"""Teacher transform :math:`\sigma_m(t) = \max(t, m)`, with a margin per channel.

    The margin keeps what the student need not imitate: negative teacher
    responses below the expected negative value of the channel. Each
    margin is a buffer of shape ``(1, C, 1, 1)`` (saved in checkpoints and
    restored on resume), computed by :func:`margin_from_bn` from the BN
    before the teacher's ReLU when the distiller builds this connector,
    i.e. after the teacher's weights are loaded. Works on a tensor or on a
    list (one margin per item, e.g. per stage).

    The config needs only ``input``: with a :class:`~mmkd.recorders.StageFeatures`
    record the BNs are found by the recorder; otherwise name them
    (``norms=['backbone.layer3.2.bn2']``, paths in the teacher) or use
    ``estimate=True`` for a teacher without BN: the margin is then the
    running mean of each channel's negative responses over training
    batches (zero until a batch has one).

    Args:
        channels: Channels of each input (an int, or a list for lists).
        margins: Precomputed margins, one ``(C,)`` sequence per input.
        norms: BN module paths in the teacher (filled by the distiller).
        estimate: Estimate the margins from the data instead.
        momentum: Update rate of the estimated margins.
        init_cfg: MMEngine init config.
    """

    def __init__(self, channels: Union[int, Sequence[int]],
                 margins: Optional[Sequence[Sequence[float]]] = None,
                 norms: Optional[Sequence[str]] = None, estimate: bool = False,
                 momentum: float = 0.1, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        del norms  # resolved into `margins` by infer_config
        self.is_list = not isinstance(channels, int)
        channels = list(channels) if self.is_list else [channels]
        if margins is None and not estimate:
            raise ConnectorConfigError(
                'MarginReLU needs the teacher BNs that produce its input (read from a '
                'StageFeatures record, or norms=[<BN paths in the teacher>]), margins=..., or '
                'estimate=True for a teacher without BN.')
        if margins is not None and len(margins) != len(channels):
            raise ConnectorConfigError(f'MarginReLU: {len(margins)} margin vectors for '
                                       f'{len(channels)} inputs.')
        self.estimate = estimate
        self.momentum = momentum
        self.num_inputs = len(channels)
        for i, c in enumerate(channels):
            value = torch.zeros(c) if margins is None else torch.as_tensor(
                margins[i], dtype=torch.float32)
            if value.numel() != c:
                raise ConnectorConfigError(f'MarginReLU input {i}: {value.numel()} margins for '
                                           f'{c} channels.')
            self.register_buffer(f'margin{i}', value.reshape(1, c, 1, 1).clone())
        if estimate:
            self.register_buffer('estimated', torch.zeros(len(channels), dtype=torch.bool))

    @classmethod
    def infer_config(cls, cfg, source, like=None, facts: RecordFacts = RecordFacts()):
        cfg.setdefault('channels', channels_of(source))
        if cfg.get('margins') is not None or cfg.get('estimate'):
            return cfg
        norms = cfg.pop('norms', None)
        if norms is not None:
            if facts.net is None:
                raise ConnectorConfigError('MarginReLU norms=... are paths in the net of its '
                                           'input record; its input is not a record.')
            modules = dict(facts.net.named_modules())
            unknown = [p for p in norms if p not in modules]
            if unknown:
                raise ConnectorConfigError(f'MarginReLU: no module(s) {unknown} in the teacher.')
            layers = [modules[p] for p in norms]
        elif facts.norm_layers is not None:
            layers = list(facts.norm_layers)
            missing = [i for i, layer in enumerate(layers) if layer is None]
            if missing:
                raise ConnectorConfigError(
                    f'MarginReLU: no BatchNorm produces the pre-ReLU feature of item(s) {missing} '
                    'of its input; give norms=[...] or estimate=True.')
        else:
            raise ConnectorConfigError(
                'MarginReLU cannot find the BN before the ReLU of its input record: record it '
                'with StageFeatures, or give norms=[<BN paths in the teacher>] or '
                'estimate=True.')
        cfg['margins'] = [margin_from_bn(layer).tolist() for layer in layers]
        return cfg

    def margins(self) -> List[torch.Tensor]:
        """The margin buffers, one per input."""
        return [getattr(self, f'margin{i}') for i in range(self.num_inputs)]

    @torch.no_grad()
    def _update_estimate(self, i: int, x: torch.Tensor) -> None:
        negative = (x < 0).to(x.dtype)
        count = negative.sum(dim=(0, 2, 3))
        mean = (x * negative).sum(dim=(0, 2, 3)) / count.clamp_min(1)
        margin = getattr(self, f'margin{i}').view(-1)
        seen = count > 0
        if not bool(self.estimated[i]):
            margin[seen] = mean[seen].to(margin.dtype)
            self.estimated[i] = bool(seen.any())
        else:
            margin[seen] += self.momentum * (mean[seen].to(margin.dtype) - margin[seen])

    def forward(self, x: Union[torch.Tensor, List[torch.Tensor]]):
        items = list(x) if self.is_list else [x]
        if len(items) != self.num_inputs:
            raise ValueError(f'MarginReLU holds {self.num_inputs} margins but got '
                             f'{len(items)} values.')
        out = []
        for i, t in enumerate(items):
            if self.estimate and self.training:
                self._update_estimate(i, t)
            out.append(torch.max(t, getattr(self, f'margin{i}').to(t.dtype)))
        return out if self.is_list else out[0]

    def extra_repr(self) -> str:
        return f'num_inputs={self.num_inputs}, estimate={self.estimate}'
