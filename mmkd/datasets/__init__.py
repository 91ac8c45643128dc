"""Dataset wrappers and samplers of mmkd."""
from .partially_labeled import UNLABELED, PartiallyLabeledDataset
from .shared_sampler import SharedSampler

__all__ = ['PartiallyLabeledDataset', 'SharedSampler', 'UNLABELED']
