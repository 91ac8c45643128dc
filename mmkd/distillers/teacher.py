"""A frozen, pre-trained teacher and the records taken from it."""
import warnings
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Mapping

import torch
from torch import nn

from mmkd.recorders import RecorderGroup, RecordNotFoundError

from .builder import build_model_from_cfg, load_teacher_checkpoint, model_cfg_from
from .errors import DistillerConfigError
from .norm_mode import TEACHER_NORM_MODES, batch_statistics

_MISSING = object()


class NonFiniteTeacherError(RuntimeError):
    """A teacher produced NaN or infinite values for a record."""


def build_frozen_teacher(cfg: dict, name: str) -> nn.Module:
    """Build teacher ``name`` from ``dict(cfg_path=..., checkpoint=...)`` (or a
    model dict with ``checkpoint``), load its weights, freeze it in eval mode.

    ``checkpoint=None`` builds an untrained teacher (tests only, with a
    warning); leaving ``checkpoint`` out is an error.
    """
    who = 'teacher' if name == 'teacher' else f'teacher {name!r}'
    if not isinstance(cfg, dict):
        raise DistillerConfigError(f'{who} must be dict(cfg_path=..., checkpoint=...); got '
                                   f'{type(cfg).__name__}.')
    checkpoint = cfg.get('checkpoint', _MISSING)
    if checkpoint is _MISSING:
        raise DistillerConfigError(
            f'{who} has no checkpoint: add checkpoint=<path to the trained teacher> '
            '(checkpoint=None distils from an untrained teacher, for tests only).')
    model_cfg, scope = model_cfg_from(cfg, who)
    net = build_model_from_cfg(model_cfg, scope)
    if checkpoint is None:
        warnings.warn(f'{who} checkpoint=None: the teacher is randomly initialised.')
        init_weights = getattr(net, 'init_weights', None)
        if callable(init_weights):
            init_weights()
    else:
        load_teacher_checkpoint(net, checkpoint)
    net.eval()
    net.requires_grad_(False)
    return net


class FrozenTeacher:
    """One teacher of a distiller: its net, records, checkpoint and BN mode.

    The net is frozen and stays in eval mode. With ``norm='batch_stats'``
    its BN layers normalise with the batch's statistics during training
    steps (as OFD's authors run the teacher), without moving the stored
    ones.

    Args:
        name: The teacher's name; it prefixes its records in references.
        cfg: ``dict(cfg_path=..., checkpoint=...)`` or a model dict with
            ``checkpoint``.
        recorders: Name -> recorder config of the records taken from it.
        norm: ``'eval'`` or ``'batch_stats'``.
        state_prefix: Prefix of its weights in the distiller's state dict
            (when teachers are saved in checkpoints).

    Attributes:
        fast_path: What the distiller's teacher fast path changed in the net
            (:class:`~mmkd.distillers.fast_teacher.TeacherFastPath`), or ``None``.
    """

    def __init__(self, name: str, cfg: dict, recorders: Mapping, norm: str = 'eval',
                 state_prefix: str = 'teacher.'):
        if norm not in TEACHER_NORM_MODES:
            raise DistillerConfigError(f'teacher {name!r}: teacher_norm={norm!r}; use one of '
                                       f'{TEACHER_NORM_MODES}.')
        self.name = name
        self.norm = norm
        self.state_prefix = state_prefix
        self.checkpoint = cfg.get('checkpoint') if isinstance(cfg, dict) else None
        self.net = build_frozen_teacher(cfg, name)
        self.records = RecorderGroup(self.net, recorders, name)
        self.fast_path = None  # set by the distiller (fast_teacher.accelerate_teachers)

    @property
    def runs(self) -> bool:
        """Whether a training step runs this teacher (it has records)."""
        return len(self.records) > 0

    def norm_context(self, training: bool) -> ContextManager:
        """BN on batch statistics during training steps in ``batch_stats`` mode."""
        return batch_statistics(self.net) if (
            training and self.norm == 'batch_stats') else nullcontext()

    def check_finite(self) -> None:
        """Stop at once if a record of this forward holds NaN or infinite values
        (a broken checkpoint, an overflow) rather than train on them."""
        for name, recorder in self.records.recorders.items():
            try:
                value = recorder.get()
            except RecordNotFoundError:  # not recorded in this pass
                continue
            for index, tensor in indexed_tensors(value):
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    bad = int((~torch.isfinite(tensor)).sum())
                    item = f' (item {index})' if index else ''
                    raise NonFiniteTeacherError(
                        f'teacher {self.name!r}: record {name!r}{item} of shape '
                        f'{tuple(tensor.shape)} holds {bad} NaN or infinite value(s). Check its '
                        f'checkpoint ({self.checkpoint}) and, under mixed precision, whether it '
                        'overflows in fp16 (bf16 or fp32 keep its range).')


def indexed_tensors(value, index: str = ''):
    """Yield ``(index, tensor)`` for every tensor in nested lists / tuples /
    mappings, in order, the index written as ``'1'``, ``'1, 0'``, ``'cls'``
    (empty for a bare tensor). The one walk over a record's or a call's tensors."""
    if isinstance(value, torch.Tensor):
        yield index, value
    elif isinstance(value, (list, tuple, Mapping)):
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        for key, item in items:
            yield from indexed_tensors(item, f'{index}, {key}' if index else str(key))


def map_tensors(function: Callable[[torch.Tensor], Any], value: Any) -> Any:
    """``value`` with ``function`` applied to every tensor in nested lists,
    tuples, named tuples and mappings (each rebuilt with its own type; a
    mapping as a dict); anything else as it is. The one map over a record's
    tensors, as :func:`indexed_tensors` is the one walk."""
    if isinstance(value, torch.Tensor):
        return function(value)
    if isinstance(value, tuple) and hasattr(value, '_fields'):  # a named tuple
        return type(value)(*(map_tensors(function, v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(map_tensors(function, v) for v in value)
    if isinstance(value, Mapping):
        return {key: map_tensors(function, v) for key, v in value.items()}
    return value
