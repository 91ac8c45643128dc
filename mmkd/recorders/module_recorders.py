"""Recorders of a module's outputs or inputs."""
from typing import Any, Optional

import torch
from torch import nn

from mmkd.registry import MODELS

from .base import ModuleRecorder


@MODELS.register_module()
class ModuleOutputs(ModuleRecorder):
    """Records what a module returns.

    With ``as_map=True`` a pooled (N, C) value is returned as an
    (N, C, 1, 1) map (a view, nothing is copied): the neck's output of a
    classifier then joins its stage features as the deepest, 1 x 1 level
    of a feature pyramid (ReviewKD compares it as the authors' code does).

    Args:
        as_map: Return a 2-d (N, C) value as (N, C, 1, 1); a value that is
            already (N, C, 1, 1) is returned unchanged.
        source, call_index, clone, item: see :class:`ModuleRecorder`.

    Example:
        >>> rec = ModuleOutputs('head.fc').attach(classifier)
        >>> with rec:
        ...     classifier(x, mode='tensor')
        >>> logits = rec.get()
        >>> pooled = ModuleOutputs('neck', item=-1, as_map=True)   # (N, C, 1, 1)
    """

    def __init__(self, source: str, call_index: int = 0, clone: Optional[bool] = None,
                 item: Optional[int] = None, as_map: bool = False):
        super().__init__(source, call_index, clone, item)
        self.as_map = as_map

    def _register(self, module: nn.Module):
        return module.register_forward_hook(lambda _m, _args, out: self._capture(out))

    def get(self) -> Any:
        """The value at ``call_index`` of the last forward (as a 1 x 1 map with ``as_map``)."""
        value = super().get()
        if not self.as_map:
            return value
        if isinstance(value, torch.Tensor) and value.dim() == 2:
            return value[:, :, None, None]
        if isinstance(value, torch.Tensor) and value.dim() == 4 and value.shape[2:] == (1, 1):
            return value
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f'{self.describe()}: as_map=True reshapes a pooled (N, C) value to '
                         f'(N, C, 1, 1); got {shape}. Record a pooled feature (e.g. the neck '
                         'with item=-1) or drop as_map.')


@MODELS.register_module()
class ModuleInputs(ModuleRecorder):
    """Records a module's positional input, captured before the module runs.

    The input of a ``ReLU`` is the pre-activation feature; recorded with
    ``clone=True`` (or detected by the distiller) it keeps its negative
    values although the ReLU works in place.

    Args:
        arg_index: Which positional argument to record.
        source, call_index, clone, item: see :class:`ModuleRecorder`.
    """

    def __init__(self, source: str, call_index: int = 0, clone: Optional[bool] = None,
                 item: Optional[int] = None, arg_index: int = 0):
        super().__init__(source, call_index, clone, item)
        self.arg_index = arg_index

    def _register(self, module: nn.Module):
        return module.register_forward_pre_hook(
            lambda _m, args: self._capture(args[self.arg_index]))
