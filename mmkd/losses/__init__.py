"""Distillation losses, one paper each, one signature:
``forward(student, teacher, **extra) -> Tensor``.

The divergences they share are the functions of :mod:`mmkd.losses.functional`.
"""
from .base import BaseDistillLoss, ShapeMismatchError, TensorOrList
from .cosine import CosineLoss
from .cwd import ChannelWiseDivergence
from .dml import DMLLoss
from .fsp import FSPLoss, fsp_matrix
from .functional import (
    binary_kl_divergence,
    kl_divergence,
    paired,
    tempered_log_softmax,
    tempered_softmax,
    tensor_list,
)
from .hcl import HCLLoss, hierarchical_context_loss
from .kd import KDLoss
from .mse import MSELoss
from .multi_teacher_kd import MultiTeacherKDLoss
from .ofd import OFDLoss, partial_l2
from .pixel_kd import PixelWiseKDLoss
from .rkd import RKDLoss
from .sigmoid_kd import SigmoidKDLoss

__all__ = ['HCLLoss', 'hierarchical_context_loss', 'OFDLoss', 'partial_l2', 'BaseDistillLoss',
           'ShapeMismatchError', 'TensorOrList', 'CosineLoss', 'KDLoss', 'MSELoss',
           'MultiTeacherKDLoss', 'RKDLoss', 'ChannelWiseDivergence', 'PixelWiseKDLoss',
           'FSPLoss', 'fsp_matrix', 'SigmoidKDLoss', 'DMLLoss', 'kl_divergence',
           'binary_kl_divergence', 'tempered_log_softmax', 'tempered_softmax', 'paired',
           'tensor_list']
