"""One connector per item of a list-valued record (one per stage or level)."""
import copy
from typing import List, Optional, Sequence, Union

import torch
from torch import nn

from mmkd.registry import MODELS

from .base import BaseConnector, ConnectorConfigError, RecordFacts, channels_of


@MODELS.register_module()
class ConnectorList(BaseConnector):
    """Applies its own copy of ``connector`` to each item of a list.

    Used for records such as :class:`~mmkd.recorders.StageFeatures`, which
    hold one feature per stage: the OFD student transform is a 1x1 conv +
    BN per stage. Channel lists are inferred like a single connector's.

    Args:
        connector: Config of the per-item connector (without channels).
        in_channels: Input channels of each item.
        out_channels: Output channels of each item (if the connector
            takes them).
        init_cfg: MMEngine init config.

    Example:
        >>> connectors = dict(feats_s=dict(
        ...     type='ConnectorList', connector=dict(type='ConvBNConnector'),
        ...     input='student.feats', like='teacher.feats'))
    """

    def __init__(self, connector: dict, in_channels: Sequence[int],
                 out_channels: Optional[Sequence[int]] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if out_channels is not None and len(out_channels) != len(in_channels):
            raise ConnectorConfigError(
                f'ConnectorList: {len(in_channels)} inputs but {len(out_channels)} outputs '
                f'(in_channels={list(in_channels)}, out_channels={list(out_channels)}).')
        self.items = nn.ModuleList()
        for i, channels in enumerate(in_channels):
            cfg = copy.deepcopy(dict(connector))
            cfg.setdefault('in_channels', channels)
            if out_channels is not None:
                cfg.setdefault('out_channels', out_channels[i])
            self.items.append(MODELS.build(cfg))

    @classmethod
    def infer_config(cls, cfg, source, like=None, facts: RecordFacts = RecordFacts()):
        if not isinstance(source, (list, tuple)):
            raise ConnectorConfigError(
                'ConnectorList reads a list-valued record (e.g. StageFeatures); for a single '
                f'tensor use its connector directly ({cfg.get("connector")}).')
        cfg.setdefault('in_channels', channels_of(source))
        if like is not None:  # without `like`, the item connectors must know their width
            cfg.setdefault('out_channels', channels_of(like))
        return cfg

    def forward(self, x: Union[List[torch.Tensor], tuple]) -> List[torch.Tensor]:
        if len(x) != len(self.items):
            raise ValueError(f'ConnectorList holds {len(self.items)} connectors but got '
                             f'{len(x)} values.')
        return [connector(item) for connector, item in zip(self.items, x)]
