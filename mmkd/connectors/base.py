"""Base class of connectors, and how their sizes are inferred from records."""
import inspect
from typing import Any, List, Optional, Union

import torch
from mmengine.model import BaseModule


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


def infer_connector_config(cls: type, cfg: dict, source: Any, like: Any = None,
                           recorder=None, model=None) -> dict:
    """Fill the arguments of a connector config that the records determine.

    Uses ``cls.infer_config`` when the class has one (every
    :class:`BaseConnector` does), else :meth:`BaseConnector.infer_config`.
    """
    infer = getattr(cls, 'infer_config', None)
    if infer is None:
        infer = BaseConnector.infer_config.__func__.__get__(cls)
    return infer(dict(cfg), source, like, recorder, model)


class BaseConnector(BaseModule):
    """Transforms one record before a loss sees it.

    A connector is configured in a distiller by the record it reads
    (``input='student.feat'``) and, optionally, the record whose shape it
    should produce (``like='teacher.feat'``). Before building it, the
    distiller calls :meth:`infer_config` with the values of a dry run, so a
    config can leave out what the records tell (channel counts by default;
    :class:`~mmkd.connectors.MarginReLU` also reads the teacher's BN).
    Connectors are trained with the student and are not part of the
    exported student.
    """

    def __init__(self, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)

    @classmethod
    def infer_config(cls, cfg: dict, source: Any, like: Any = None, recorder=None,
                     model=None) -> dict:
        """Complete ``cfg`` from dry-run values.

        Args:
            cfg: The connector's config (without ``input`` / ``like``).
            source: Dry-run value of the ``input`` record (tensor or list).
            like: Dry-run value of the ``like`` record, if given.
            recorder: The recorder of ``input`` (None when it is a connector).
            model: The net that recorder is attached to.

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
