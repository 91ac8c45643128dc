"""Distillation losses, one paper each, one signature:
``forward(student, teacher, **extra) -> Tensor``."""
from .base import BaseDistillLoss, ShapeMismatchError
from .cosine import CosineLoss
from .fsp import FSPLoss, fsp_matrix
from .cwd import ChannelWiseDivergence
from .dml import DMLLoss
from .hcl import HCLLoss, hierarchical_context_loss
from .kd import KDLoss
from .mse import MSELoss
from .pixel_kd import PixelWiseKDLoss
from .multi_teacher_kd import MultiTeacherKDLoss
from .rkd import RKDLoss
from .sigmoid_kd import SigmoidKDLoss
from .ofd import OFDLoss, partial_l2

__all__ = ['HCLLoss', 'hierarchical_context_loss', 'OFDLoss', 'partial_l2', 'BaseDistillLoss', 'ShapeMismatchError', 'CosineLoss', 'KDLoss', 'MSELoss',
           'MultiTeacherKDLoss', 'RKDLoss', 'ChannelWiseDivergence', 'PixelWiseKDLoss',
           'FSPLoss', 'fsp_matrix',
           'SigmoidKDLoss', 'DMLLoss']
