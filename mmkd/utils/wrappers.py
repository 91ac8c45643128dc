"""The model inside MMEngine's model wrappers."""
from mmengine.model import is_model_wrapper
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP/FSDP wrappers (the model itself when unwrapped)."""
    return model.module if is_model_wrapper(model) else model
