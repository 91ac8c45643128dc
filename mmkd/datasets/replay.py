"""Augmentation that can be replayed: the same random view of a sample in every run.

A cached teacher (:mod:`mmkd.distillers.teacher_cache`) stores the teacher's
outputs for each sample and each epoch's random view of it. For the student to
see the view the teacher saw, the view must be a function of what names it:
:class:`ReplaySampler` hands out ``(view epoch, sample index)`` keys instead of
indices, and :class:`ReplayDataset` runs the pipeline of the sample under
random generators seeded from the key. The view is then the same in the run
that writes the cache (``tools/cache_teacher.py`` or the first epochs of
training), in every later run, in any data-loader worker and on any process.
"""
import copy
import random
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, Sized, Tuple, Union

import numpy as np
import torch
from mmengine.dataset import BaseDataset, DefaultSampler

from mmkd.registry import DATA_SAMPLERS, DATASETS

#: Metainfo key of a data sample that holds its view key ``(view epoch, sample index)``.
VIEW_KEY = 'view_key'
ViewKey = Tuple[int, int]


def view_seed(seed: int, view_epoch: int, index: int) -> int:
    """A 32-bit seed for the view ``(view_epoch, index)`` of a run seeded with ``seed``
    (NumPy's ``SeedSequence``, so nearby keys give unrelated streams)."""
    return int(np.random.SeedSequence([seed, view_epoch, index]).generate_state(1)[0])


@contextmanager
def seeded_randomness(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and PyTorch's global generators (the ones
    OpenMMLab's transforms draw from) for the block, then restore their states,
    so the randomness around the block is untouched."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


@DATASETS.register_module()
class ReplayDataset:
    """Wraps a dataset so that each sample's random view is fixed by its view key.

    Indexed with ``(view_epoch, index)`` (what :class:`ReplaySampler` yields),
    it returns sample ``index`` of the wrapped dataset with its pipeline run
    under generators seeded from ``(seed, view_epoch, index)``, and records the
    key in the data sample's metainfo (``view_key``), where a cached teacher
    looks it up. An integer index gives the sample as the wrapped dataset
    would, without a key.

    A pipeline whose randomness comes from the global Python, NumPy or
    PyTorch generators (all of MMCV's, MMPretrain's, MMDetection's and
    MMSegmentation's transforms) replays exactly; a transform with a generator
    of its own does not, and :func:`~mmkd.distillers.teacher_cache.check_replay`
    refuses such a pipeline before a cache is written.

    Args:
        dataset: The dataset or its config. Its pipeline must end with a
            ``PackInputs``-like step (samples with ``data_samples``).
        seed: Seed of the views; a cache is keyed by it.
        lazy_init: Defer the wrapped dataset's ``full_init``.

    Example (config)::

        train_dataloader = dict(
            sampler=dict(type='ReplaySampler', shuffle=True, view_epochs=4),
            dataset=dict(type='ReplayDataset', seed=0,
                         dataset=dict(_scope_='mmpretrain', type='FashionMNIST', ...)))
    """

    def __init__(self, dataset: Union[BaseDataset, dict], seed: int = 0,
                 lazy_init: bool = False):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.seed = int(seed)
        if not lazy_init and hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self.dataset.metainfo)

    def full_init(self) -> None:
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx)

    def describe(self) -> Dict[str, Any]:
        """What determines the views: a cache written with other views is refused."""
        inner = self.dataset
        return {'dataset': f'{type(inner).__module__}.{type(inner).__name__}',
                'samples': len(inner),
                'data_root': str(getattr(inner, 'data_root', '')),
                'ann_file': str(getattr(inner, 'ann_file', '')),
                'pipeline': repr(getattr(inner, 'pipeline', None)),
                'view_seed': self.seed}

    def __getitem__(self, key: Union[int, ViewKey]) -> dict:
        if not isinstance(key, (tuple, list)):
            return self.dataset[key]
        view_epoch, index = int(key[0]), int(key[1])
        with seeded_randomness(view_seed(self.seed, view_epoch, index)):
            data = self.dataset[index]
        samples = data.get('data_samples') if isinstance(data, dict) else None
        if samples is None or not hasattr(samples, 'set_metainfo'):
            raise TypeError('ReplayDataset needs samples packed with a data sample (a pipeline '
                            "ending with dict(type='PackInputs') or PackDetInputs / "
                            'PackSegInputs).')
        samples.set_metainfo({VIEW_KEY: (view_epoch, index)})
        return data

    def __len__(self) -> int:
        return len(self.dataset)

    def check_replays(self, keys=((0, 0), (1, 0))) -> None:
        """Load each view key twice and refuse a pipeline whose views differ
        (a transform with a random generator of its own)."""
        for key in keys:
            if key[1] >= len(self):
                continue
            first, second = self[key]['inputs'], self[key]['inputs']
            same = (torch.equal(first, second) if isinstance(first, torch.Tensor)
                    else repr(first) == repr(second))
            if not same:
                raise ValueError(
                    f'the pipeline gives two different views for the same view key {key}: a '
                    'transform draws from a random generator of its own, not the global Python / '
                    'NumPy / PyTorch ones, so a cached teacher would see other views than the '
                    f'student. Pipeline: {self.describe()["pipeline"]}')


@DATA_SAMPLERS.register_module()
class ReplaySampler(DefaultSampler):
    """MMEngine's ``DefaultSampler`` that yields view keys ``(view epoch, index)``.

    Order, shuffling and the split between processes are the
    ``DefaultSampler``'s; epoch ``e`` shows the views of view epoch ``e mod
    view_epochs``, so a cache of ``view_epochs`` epochs of views serves a run
    of any length (Fast Knowledge Distillation reuses its stored views the
    same way).

    Args:
        dataset: The dataset (a :class:`ReplayDataset`).
        shuffle: Shuffle each epoch.
        seed: Shuffling seed (the run's seed by default).
        round_up: As in ``DefaultSampler``.
        view_epochs: How many epochs of distinct views there are.
    """

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: Optional[int] = None,
                 round_up: bool = True, view_epochs: int = 1):
        if int(view_epochs) < 1:
            raise ValueError(f'view_epochs must be at least 1; got {view_epochs}.')
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=round_up)
        self.view_epochs = int(view_epochs)

    @property
    def view_epoch(self) -> int:
        """The view epoch of the current epoch."""
        return self.epoch % self.view_epochs

    def __iter__(self) -> Iterator[ViewKey]:
        view_epoch = self.view_epoch
        for index in super().__iter__():
            yield view_epoch, int(index)
