"""A sampler that gives every process the same samples (distributed DML)."""
from typing import Optional, Sized

from mmengine.dataset import DefaultSampler

from mmkd.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class SharedSampler(DefaultSampler):
    """MMEngine's ``DefaultSampler`` without splitting the data between processes.

    In distributed Deep Mutual Learning each process holds a different member
    and all members must see the same batch, so every process iterates the
    whole dataset in the same order (the shuffling seed is synchronised across
    processes as in ``DefaultSampler``; ``set_epoch`` reshuffles).

    Args:
        dataset: The dataset.
        shuffle: Shuffle each epoch.
        seed: Shuffling seed; by default one random seed shared by all
            processes.

    Example (config)::

        train_dataloader = dict(sampler=dict(type='SharedSampler', shuffle=True))
    """

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: Optional[int] = None):
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=False)
        self.rank, self.world_size = 0, 1
        self.num_samples = self.total_size = len(self.dataset)
