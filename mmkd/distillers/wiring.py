"""How a loss config maps onto a loss module and the references feeding it."""
import collections.abc as collections_abc
import inspect
import typing
from typing import Any, Collection, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from mmkd.registry import MODELS

from .errors import DistillerConfigError
from .references import Reference, parse_reference

#: A loss ``forward`` argument of this name receives the batch's data samples.
SAMPLES_ARG = 'data_samples'


def takes_data_samples(loss: nn.Module) -> bool:
    """Whether ``loss.forward`` asks for the batch's data samples."""
    return SAMPLES_ARG in inspect.signature(loss.forward).parameters


_KINDS = {float: (int, float), int: (int, ), bool: (bool, ), str: (str, )}


def _accepted(annotation: Any, default: Any) -> Optional[tuple]:
    """The Python types a config value may have for a parameter, or ``None``
    when the annotation says nothing checkable."""
    if annotation is None or annotation is inspect.Parameter.empty:
        kinds = _KINDS.get(type(default)) if default is not None else None
        return None if kinds is None or default is inspect.Parameter.empty else kinds
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        parts = [_accepted(a, inspect.Parameter.empty) for a in typing.get_args(annotation)]
        if any(p is None for p in parts if p != (type(None), )):
            return None
        return tuple(t for p in parts for t in p)
    if annotation is type(None):
        return (type(None), )
    if origin in (list, tuple, typing.Sequence, collections_abc.Sequence) or annotation in (
            list, tuple):
        return (list, tuple)
    return _KINDS.get(annotation)


def check_argument_types(cls: type, cfg: Mapping[str, Any], where: str) -> None:
    """Refuse config values of a type ``cls.__init__`` cannot take (``tau='4'``).

    Numbers, flags, strings and sequences are checked against the
    parameter's annotation (or, without one, its default's type); other
    parameters are left to the class.

    Raises:
        DistillerConfigError: naming the component, the argument, the value
            and the type it needs.
    """
    params = inspect.signature(cls.__init__).parameters
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back on defaults
        hints = {}
    for key, value in cfg.items():
        if key == 'type' or key not in params:
            continue
        kinds = _accepted(hints.get(key, params[key].annotation), params[key].default)
        if kinds is None or isinstance(value, kinds):
            continue
        wanted = ' or '.join(sorted({'number' if k in (int, float) else
                                     'None' if k is type(None) else
                                     'list' if k in (list, tuple) else k.__name__
                                     for k in kinds}))
        raise DistillerConfigError(
            f'{where} ({cls.__name__}): {key}={value!r} is a {type(value).__name__}; it takes '
            f'a {wanted}.')


def build_loss(name: str, cfg: dict, records: Mapping[str, Collection[str]],
               connectors: Collection[str]) -> Tuple[nn.Module, Dict[str, Reference]]:
    """Build loss ``name`` and the references of its ``forward`` arguments.

    Keys of ``cfg`` that name arguments of the loss's ``forward`` are
    references; the others go to its ``__init__``. A ``forward`` with
    ``**kwargs`` also takes any other string (or list) key as a reference.

    Args:
        name: The loss's name in the config.
        cfg: Its config (``type`` and the keys above).
        records: Net name -> names of its records.
        connectors: Connector names.

    Returns:
        ``(loss module, {forward argument: reference})``.
    """
    where = f'loss {name!r}'
    cls = MODELS.get(cfg.get('type', ''))
    if cls is None:
        raise DistillerConfigError(f'{where}: unknown loss type {cfg.get("type")!r}.')
    fwd = inspect.signature(cls.forward).parameters
    init = inspect.signature(cls.__init__).parameters
    names = [p for p in fwd if p not in ('self', SAMPLES_ARG) and fwd[p].kind not in (
        inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    takes_extra = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in fwd.values())
    init_takes_extra = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in init.values())
    mapping, ctor = {}, {}
    for key, value in cfg.items():
        if key in names:
            mapping[key] = value
        elif key == 'type' or key in init or init_takes_extra:
            ctor[key] = value
        elif takes_extra and isinstance(value, (str, list, tuple)):
            mapping[key] = value
        else:
            raise DistillerConfigError(
                f'{where} ({cls.__name__}): unknown argument {key!r}. forward takes '
                f'{names}, __init__ takes {[p for p in init if p != "self"]}.')
    required = [p for p in names if fwd[p].default is inspect.Parameter.empty]
    unmapped = [p for p in required if p not in mapping]
    if unmapped:
        raise DistillerConfigError(
            f'{where} ({cls.__name__}): argument(s) {unmapped} of forward are not mapped to '
            f'a record; add e.g. {unmapped[0]}="<record name>" to the loss config.')
    inputs = {arg: parse_reference(ref, arg, where, records, connectors)
              for arg, ref in mapping.items()}
    check_argument_types(cls, ctor, where)
    return MODELS.build(ctor), inputs


def scale_losses(losses: Dict[str, object], scale: float) -> Dict[str, object]:
    """Multiply the entries of a loss dict whose key contains ``'loss'``.

    Entries may be tensors or lists of tensors (mmdet's per-level losses);
    other entries (e.g. accuracies) are kept. A scale of 0 also detaches,
    so nothing is backpropagated through the student's head for them.

    Args:
        losses: A model's loss dict.
        scale: The factor.

    Returns:
        A new dict.

    Example:
        >>> scale_losses({'loss': torch.tensor(2.), 'acc': torch.tensor(.5)}, 0.5)
        {'loss': tensor(1.), 'acc': tensor(0.5000)}
    """
    def apply(value):
        if isinstance(value, torch.Tensor):
            return value.detach() * 0 if scale == 0 else value * scale
        if isinstance(value, (list, tuple)):
            return type(value)(apply(v) for v in value)
        return value

    return {k: apply(v) if 'loss' in k else v for k, v in losses.items()}
