"""Distillation losses, one paper each, one signature:
``forward(student, teacher, **extra) -> Tensor``."""
from .base import BaseDistillLoss, ShapeMismatchError
from .cosine import CosineLoss
from .kd import KDLoss
from .mse import MSELoss

__all__ = ['BaseDistillLoss', 'ShapeMismatchError', 'CosineLoss', 'KDLoss', 'MSELoss']
