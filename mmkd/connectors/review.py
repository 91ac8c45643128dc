"""The review path of Knowledge Review: ABFs from the deepest level to the shallowest."""
from typing import Any, List, Optional, Sequence

import torch
from torch import nn

from mmkd.registry import MODELS

from .abf import ABF
from .base import BaseConnector, ConnectorConfigError, RecordFacts, channels_of


def review_levels(value: Any) -> List[torch.Tensor]:
    """The levels of a review path, shallow to deep, as one flat list of tensors.

    A list reference such as ``['student.feats', 'student.pooled']`` gives a
    list of stage features followed by the pooled feature; nested lists are
    flattened in order.
    """
    if isinstance(value, torch.Tensor):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise ConnectorConfigError(f'ReviewKDConnector reads tensors or lists of them; got a '
                                   f'{type(value).__name__}.')
    return [t for item in value for t in review_levels(item)]


@MODELS.register_module()
class ReviewKDConnector(BaseConnector):
    """Student levels -> one fused feature per teacher level.

    The levels (shallow to deep: the stage features, then the pooled feature
    as a 1 x 1 map, as in the authors' code) run from the deepest to the
    shallowest through one :class:`ABF` each; every ABF but the deepest
    fuses the residual of the one below it, so the feature compared with
    teacher level *i* mixes student levels *i..n* ("review"). The deepest
    level of the authors' code is the globally pooled feature: its ABF fuses
    nothing, and its 1 x 1 residual brings global context into every
    shallower level (nearest upsampling spreads it over the map). Outputs
    are returned shallow to deep, each with its teacher level's channels
    and size.

    The input is a list of tensors; a list reference that joins records,
    ``input=['student.feats', 'student.pooled']``, is flattened in order
    (stage features from :class:`~mmkd.recorders.StageFeatures`, the pooled
    level from ``ModuleOutputs(source='neck', item=-1, as_map=True)``).
    Channels and the spatial ratio teacher / student of each level are
    inferred from the ``input`` and ``like`` records; sizes are applied as
    ratios, so other input sizes work too.

    Fidelity: docs/fidelity.md#reviewkd

    Args:
        in_channels: Student channels per level.
        out_channels: Teacher channels per level.
        scales: Teacher size / student size per level (1.0 when equal).
        mid_channels: Width of the fused path; default
            ``min(512, in_channels[-1])`` (the authors' rule; the deepest
            level is the pooled feature, as wide as the last stage).
        init_cfg: MMEngine init config.

    Example:
        >>> connectors = dict(review=dict(
        ...     type='ReviewKDConnector', input=['student.feats', 'student.pooled'],
        ...     like=['teacher.feats', 'teacher.pooled']))
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int],
                 scales: Optional[Sequence[float]] = None, mid_channels: Optional[int] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) != len(out_channels):
            raise ConnectorConfigError(
                f'ReviewKDConnector: {len(in_channels)} student levels but '
                f'{len(out_channels)} teacher levels; record as many on both nets.')
        self.num_levels = len(in_channels)
        self.scales = [1.0] * self.num_levels if scales is None else [float(s) for s in scales]
        self.mid_channels = mid_channels or min(512, in_channels[-1])
        # abfs[i] serves level i; the deepest one does not fuse.
        self.abfs = nn.ModuleList(
            ABF(c_in, self.mid_channels, c_out, fuse=i < self.num_levels - 1)
            for i, (c_in, c_out) in enumerate(zip(in_channels, out_channels)))

    @classmethod
    def infer_config(cls, cfg, source, like=None, facts: RecordFacts = RecordFacts()):
        source = review_levels(source) if isinstance(source, (list, tuple)) else source
        if not isinstance(source, list) or len(source) < 2:
            raise ConnectorConfigError(
                'ReviewKDConnector reads a list of at least two levels, e.g. '
                "input=['student.feats', 'student.pooled'] (StageFeatures and the pooled "
                'neck output with as_map=True).')
        cfg.setdefault('in_channels', channels_of(source))
        if like is None:
            if 'out_channels' not in cfg:
                raise ConnectorConfigError('give like=<teacher records> or out_channels.')
            return cfg
        like = review_levels(like)
        cfg.setdefault('out_channels', channels_of(like))
        if 'scales' not in cfg and len(like) == len(source):
            cfg['scales'] = [t.shape[-1] / s.shape[-1] for s, t in zip(source, like)]
        return cfg

    def forward(self, feats: Sequence[Any]) -> List[torch.Tensor]:
        feats = review_levels(feats)
        if len(feats) != self.num_levels:
            raise ValueError(f'ReviewKDConnector expects {self.num_levels} levels; '
                             f'got {len(feats)}.')
        outputs: List[Optional[torch.Tensor]] = [None] * self.num_levels
        residual = None
        for i in reversed(range(self.num_levels)):
            h, w = feats[i].shape[-2:]
            # int(...) first: under tracing a size is a 0-d tensor, which round() refuses.
            size = (round(int(h) * self.scales[i]), round(int(w) * self.scales[i]))
            outputs[i], residual = self.abfs[i](feats[i], residual, size)
        return outputs
