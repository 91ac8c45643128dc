"""A labelled dataset with a fraction of its samples marked unlabelled."""
import copy
from typing import Union

import numpy as np
from mmengine.dataset import BaseDataset

from mmkd.registry import DATASETS

UNLABELED = -1


@DATASETS.register_module()
class PartiallyLabeledDataset:
    """Marks a random fraction of a labelled dataset as unlabelled.

    For semi-supervised experiments: the samples chosen (with ``seed``, the
    same in every run and process) keep their images but get
    ``gt_label = -1``; :class:`~mmkd.distillers.MutualLearner` gives them the
    mimicry loss and no task loss. A plain classifier refuses them (a
    cross-entropy target of -1 fails), so they cannot be used by mistake.

    Args:
        dataset: The labelled dataset or its config. Its pipeline must end
            with ``PackInputs`` (samples with ``data_samples``).
        labeled_fraction: Fraction of samples that keep their labels, in
            (0, 1]; at least one sample stays labelled.
        seed: Seed of the choice of labelled samples.
        lazy_init: Build the index only on first use.

    Example (config)::

        train_dataloader = dict(dataset=dict(
            type='PartiallyLabeledDataset', labeled_fraction=0.25,
            dataset=dict(_scope_='mmpretrain', type='FashionMNIST', ...)))
    """

    def __init__(self, dataset: Union[BaseDataset, dict], labeled_fraction: float,
                 seed: int = 0, lazy_init: bool = False):
        if not 0 < labeled_fraction <= 1:
            raise ValueError(f'labeled_fraction must be in (0, 1]; got {labeled_fraction}.')
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.labeled_fraction = labeled_fraction
        self.seed = seed
        self._metainfo = self.dataset.metainfo
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self._metainfo)

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()
        n = len(self.dataset)
        keep = max(1, int(round(self.labeled_fraction * n)))
        order = np.random.default_rng(self.seed).permutation(n)
        self.labeled = np.zeros(n, dtype=bool)
        self.labeled[order[:keep]] = True
        self._fully_initialized = True

    def is_labeled(self, idx: int) -> bool:
        self.full_init()
        return bool(self.labeled[idx])

    def get_data_info(self, idx: int) -> dict:
        info = self.dataset.get_data_info(idx)
        if not self.is_labeled(idx):
            info['gt_label'] = UNLABELED
        return info

    def __getitem__(self, idx: int) -> dict:
        data = self.dataset[idx]
        if not self.is_labeled(idx):
            samples = data.get('data_samples') if isinstance(data, dict) else None
            if samples is None or not hasattr(samples, 'set_gt_label'):
                raise TypeError('PartiallyLabeledDataset needs samples packed with a data '
                                "sample (pipeline ending with dict(type='PackInputs')).")
            samples.set_gt_label(UNLABELED)
        return data

    def __len__(self) -> int:
        return len(self.dataset)
