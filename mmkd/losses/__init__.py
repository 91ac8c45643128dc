"""Distillation losses, one paper each, one signature:
``forward(student, teacher, **extra) -> Tensor``.

The divergences they share are the functions of :mod:`mmkd.losses.functional`.
"""
from .at import ATLoss, attention_map
from .base import BaseDistillLoss, ShapeMismatchError, TensorOrList
from .contrast_memory import ContrastMemory
from .cosine import CosineLoss
from .crd import CRDLoss, nce_loss
from .cwd import ChannelWiseDivergence
from .dist import DISTLoss, pearson_correlation
from .dkd import DKDLoss
from .dml import DMLLoss
from .fgd import FGDLoss
from .fsp import FSPLoss, fsp_matrix
from .functional import (
    binary_kl_divergence,
    kl_divergence,
    paired,
    smoothed_kl_divergence,
    softmax_logits,
    standardize_logits,
    tempered_log_softmax,
    tempered_softmax,
    tensor_list,
)
from .hcl import HCLLoss, hierarchical_context_loss
from .kd import KDLoss
from .mse import MSELoss
from .multi_teacher_kd import MultiTeacherKDLoss
from .ofd import OFDLoss, partial_l2
from .pairwise import PairWiseSimilarityLoss, node_pool_kernel, position_similarity
from .pixel_kd import PixelWiseKDLoss
from .pkd import PKDLoss, standardize_channels
from .pkt import PKTLoss, cosine_affinities
from .rkd import RKDLoss
from .sigmoid_kd import SigmoidKDLoss
from .sp import SPLoss, similarity_matrix
from .vid import VIDLoss, gaussian_nll

__all__ = ['HCLLoss', 'hierarchical_context_loss', 'OFDLoss', 'partial_l2', 'BaseDistillLoss',
           'ShapeMismatchError', 'TensorOrList', 'CosineLoss', 'KDLoss', 'MSELoss',
           'MultiTeacherKDLoss', 'RKDLoss', 'ChannelWiseDivergence', 'PixelWiseKDLoss',
           'FSPLoss', 'fsp_matrix', 'SigmoidKDLoss', 'DMLLoss', 'kl_divergence',
           'binary_kl_divergence', 'tempered_log_softmax', 'tempered_softmax', 'paired',
           'tensor_list', 'DKDLoss', 'DISTLoss', 'pearson_correlation',
           'standardize_logits', 'softmax_logits',
           'ATLoss', 'attention_map', 'PKTLoss', 'cosine_affinities', 'SPLoss',
           'similarity_matrix', 'VIDLoss', 'gaussian_nll', 'smoothed_kl_divergence',
           'ContrastMemory', 'CRDLoss', 'nce_loss', 'PKDLoss', 'standardize_channels',
           'PairWiseSimilarityLoss', 'node_pool_kernel', 'position_similarity', 'FGDLoss']
