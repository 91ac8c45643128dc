"""Helpers shared by mmkd's hooks."""
from mmengine.model import is_model_wrapper
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP/FSDP wrappers."""
    return model.module if is_model_wrapper(model) else model
