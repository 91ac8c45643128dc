"""Base class of connectors, and how their sizes are inferred from records."""
import inspect
from dataclasses import dataclass
from typing import Any, List, Optional, Union

import torch
from mmengine.model import BaseModule
from torch import nn


class ConnectorConfigError(ValueError):
    """A connector's config cannot be completed from the records it reads."""


def channels_of(value: Any) -> Union[int, List[int]]:
    """Channel count (dim 1) of a tensor, or the list of them for a list of tensors."""
    if isinstance(value, torch.Tensor):
        if value.dim() < 2:
            raise ConnectorConfigError(f'a value of shape {tuple(value.shape)} has no channel '
                                       'dimension.')
        return value.shape[1]
    if isinstance(value, (list, tuple)):
        return [channels_of(v) for v in value]
    raise ConnectorConfigError(f'cannot read channels from a {type(value).__name__}.')


@dataclass(frozen=True)
class RecordFacts:
    """What the distiller knows about a connector's input besides its dry-run value.

    Args:
        net: The net the input record is taken from (``None`` when the input
            is another connector's output).
        norm_layers: The normalisation layer that produced each item of the
            record, where the recorder found it (e.g. the BN before each
            stage's ReLU, from :class:`~mmkd.recorders.StageFeatures`).
    """
    net: Optional[nn.Module] = None
    norm_layers: Optional[List[Optional[nn.Module]]] = None


def infer_connector_config(cls: type, cfg: dict, source: Any, like: Any = None,
                           facts: RecordFacts = RecordFacts()) -> dict:
    """Fill the arguments of a connector config that the records determine.

    A :class:`BaseConnector` completes its own config
    (:meth:`BaseConnector.infer_config`); any other module registered as a
    connector gets the default: channels from ``source`` and ``like``.
    """
    if isinstance(cls, type) and issubclass(cls, BaseConnector):
        return cls.infer_config(dict(cfg), source, like, facts)
    return BaseConnector.infer_config.__func__(cls, dict(cfg), source, like, facts)


class BaseConnector(BaseModule):
    """Transforms one record before a loss sees it.

    A connector is configured in a distiller by the record it reads
    (``input='student.feat'``) and, optionally, the record whose shape it
    should produce (``like='teacher.feat'``). Before building it, the
    distiller calls :meth:`infer_config` with the values of a dry run, so a
    config can leave out what the records tell (channel counts by default;
    :class:`~mmkd.connectors.MarginReLU` also takes the teacher's BN from the
    record's :class:`RecordFacts`).
    Connectors are trained with the student and are not part of the
    exported student.
    """

    def __init__(self, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)

    @classmethod
    def infer_config(cls, cfg: dict, source: Any, like: Any = None,
                     facts: RecordFacts = RecordFacts()) -> dict:
        """Complete ``cfg`` from dry-run values.

        Args:
            cfg: The connector's config (without ``input`` / ``like``).
            source: Dry-run value of the ``input`` reference (tensor or list).
            like: Dry-run value of the ``like`` reference, if given.
            facts: What else is known about ``input`` (its net, the
                normalisation layers behind it).

        Returns:
            The completed config. By default ``in_channels`` and
            ``out_channels`` (when ``__init__`` takes them) are set from
            ``source`` and ``like``.
        """
        params = inspect.signature(cls.__init__).parameters
        if 'in_channels' in params and 'in_channels' not in cfg:
            cfg['in_channels'] = channels_of(source)
        if 'out_channels' in params and 'out_channels' not in cfg:
            if like is None:
                raise ConnectorConfigError(
                    'give out_channels, or like=<record> to copy its channels.')
            cfg['out_channels'] = channels_of(like)
        return cfg
