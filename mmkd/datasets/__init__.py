"""Dataset wrappers and samplers of mmkd."""
from .partially_labeled import UNLABELED, PartiallyLabeledDataset
from .replay import VIEW_KEY, ReplayDataset, ReplaySampler, seeded_randomness, view_seed
from .shared_sampler import SharedSampler

__all__ = ['PartiallyLabeledDataset', 'ReplayDataset', 'ReplaySampler', 'SharedSampler',
           'UNLABELED', 'VIEW_KEY', 'seeded_randomness', 'view_seed']
