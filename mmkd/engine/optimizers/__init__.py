"""Optimizer wrappers of mmkd."""
from .mixed_precision import MixedPrecisionOptimWrapper, mixed_precision_cfg

__all__ = ['MixedPrecisionOptimWrapper', 'mixed_precision_cfg']
