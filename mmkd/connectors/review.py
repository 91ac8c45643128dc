"""The review path of Knowledge Review: ABFs from the deepest stage to the shallowest."""
from typing import List, Optional, Sequence

import torch
from torch import nn

from mmkd.registry import MODELS

from .abf import ABF
from .base import BaseConnector, ConnectorConfigError, RecordFacts, channels_of


@MODELS.register_module()
class ReviewKDConnector(BaseConnector):
    """Student stage features -> one fused feature per teacher stage.

    Stage features (shallow to deep) run from the deepest to the shallowest
    through one :class:`ABF` each; every ABF but the deepest fuses the
    residual of the one below it, so the feature compared with teacher
    stage *i* mixes student stages *i..n* ("review"). Outputs are returned
    shallow to deep, each with its teacher stage's channels and size.

    Channels and the spatial ratio teacher / student of each stage are
    inferred from the ``input`` and ``like`` records; sizes are applied as
    ratios, so other input sizes work too.

    Args:
        in_channels: Student channels per stage.
        out_channels: Teacher channels per stage.
        scales: Teacher size / student size per stage (1.0 when equal).
        mid_channels: Width of the fused path; default
            ``min(512, in_channels[-1])``.
        init_cfg: MMEngine init config.

    Example:
        >>> connectors = dict(review=dict(type='ReviewKDConnector',
        ...                               input='student.feats', like='teacher.feats'))
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int],
                 scales: Optional[Sequence[float]] = None, mid_channels: Optional[int] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) != len(out_channels):
            raise ConnectorConfigError(
                f'ReviewKDConnector: {len(in_channels)} student stages but '
                f'{len(out_channels)} teacher stages; record as many on both nets.')
        self.num_stages = len(in_channels)
        self.scales = [1.0] * self.num_stages if scales is None else [float(s) for s in scales]
        self.mid_channels = mid_channels or min(512, in_channels[-1])
        # abfs[i] serves stage i; the deepest one does not fuse.
        self.abfs = nn.ModuleList(
            ABF(c_in, self.mid_channels, c_out, fuse=i < self.num_stages - 1)
            for i, (c_in, c_out) in enumerate(zip(in_channels, out_channels)))

    @classmethod
    def infer_config(cls, cfg, source, like=None, facts: RecordFacts = RecordFacts()):
        if not isinstance(source, (list, tuple)) or len(source) < 2:
            raise ConnectorConfigError('ReviewKDConnector reads a list of at least two stage '
                                       'features (e.g. a StageFeatures record).')
        cfg.setdefault('in_channels', channels_of(source))
        if like is None:
            if 'out_channels' not in cfg:
                raise ConnectorConfigError('give like=<teacher record> or out_channels.')
            return cfg
        cfg.setdefault('out_channels', channels_of(like))
        if 'scales' not in cfg and len(like) == len(source):
            cfg['scales'] = [t.shape[-1] / s.shape[-1] for s, t in zip(source, like)]
        return cfg

    def forward(self, feats: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        if len(feats) != self.num_stages:
            raise ValueError(f'ReviewKDConnector expects {self.num_stages} stage features; '
                             f'got {len(feats)}.')
        outputs: List[Optional[torch.Tensor]] = [None] * self.num_stages
        residual = None
        for i in reversed(range(self.num_stages)):
            h, w = feats[i].shape[-2:]
            size = (round(h * self.scales[i]), round(w * self.scales[i]))
            outputs[i], residual = self.abfs[i](feats[i], residual, size)
        return outputs
