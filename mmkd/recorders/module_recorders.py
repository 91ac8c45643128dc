"""Recorders of a module's outputs or inputs."""
from typing import Optional

from torch import nn

from mmkd.registry import MODELS

from .base import ModuleRecorder


@MODELS.register_module()
class ModuleOutputs(ModuleRecorder):
    """Records what a module returns.

    Example:
        >>> rec = ModuleOutputs('head.fc').attach(classifier)
        >>> with rec:
        ...     classifier(x, mode='tensor')
        >>> logits = rec.get()
    """

    def _register(self, module: nn.Module):
        return module.register_forward_hook(lambda _m, _args, out: self._capture(out))


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
