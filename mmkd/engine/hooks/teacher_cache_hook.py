"""Teacher-free epochs: the hook that connects a run to its teacher cache.

A config asks for a cache with one top-level entry::

    teacher_cache = dict(dir='work_dirs/cache/r56_fashionmnist', view_epochs=4)

and :func:`apply_teacher_cache` (which ``tools/train.py``, ``tools/distill.py``
and ``tools/cache_teacher.py`` call) turns it into the three parts that
do the work: the training set wrapped in a
:class:`~mmkd.datasets.ReplayDataset`, a :class:`~mmkd.datasets.ReplaySampler`,
and a :class:`TeacherCacheHook`.
"""
import copy
import hashlib
import os.path as osp
from typing import Any, Dict, List, Mapping, Optional

from mmengine.config import Config
from mmengine.hooks import Hook

from mmkd.datasets import ReplayDataset, ReplaySampler
from mmkd.distillers.nets import TEACHER, nets_of
from mmkd.distillers.teacher_cache import (
    TeacherCache,
    TeacherCacheError,
    file_digest,
    teachers_of,
)
from mmkd.registry import HOOKS
from mmkd.utils import unwrap

from .teacher_evaluation_hook import _preprocessor, module_fingerprint

#: The config entry :func:`apply_teacher_cache` reads.
CONFIG_KEY = 'teacher_cache'
_HOOK_SETTINGS = ('dir', 'dtype', 'topk')


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def cache_fingerprint(model, fields: Mapping[str, int], dataset: ReplayDataset,
                      view_epochs: int) -> Dict[str, Any]:
    """What a cache's values depend on: each cached teacher's checkpoint bytes,
    architecture, records and input preprocessing, and the views (dataset,
    pipeline, view seed, view epochs)."""
    cached = teachers_of(fields)
    teachers = {}
    for net in nets_of(model, TEACHER):
        if net.name not in cached:
            continue
        checkpoint = net.checkpoint
        records = model.frozen_teachers[net.name].records
        teachers[net.name] = {
            'checkpoint_sha256': file_digest(checkpoint) if checkpoint and osp.isfile(
                checkpoint) else None,
            'architecture_sha256': _digest(repr(net.module)),
            'preprocessing_sha256': _digest(module_fingerprint(_preprocessor(model, net))),
            'records': {name: records[name].describe() for name in records}}
    return {'teachers': teachers, 'data': {**dataset.describe(), 'view_epochs': view_epochs}}


@HOOKS.register_module()
class TeacherCacheHook(Hook):
    """Reads the teachers' outputs from a cache, and fills it where it is empty.

    Before training it checks that the training set replays its views
    (a :class:`~mmkd.datasets.ReplayDataset` with a
    :class:`~mmkd.datasets.ReplaySampler`), finds which teachers can be
    cached (those whose records are all per-sample vectors: logits,
    embeddings; feature-map methods keep their teacher online), opens the
    cache (creating it, or refusing one written for another teacher, data or
    layout) and attaches it to the distiller. Each training step then reads
    a cached teacher's records for the batch's views where the cache holds
    them and runs the teacher, storing its records, where it does not: a run
    whose cache was written by ``tools/cache_teacher.py`` never runs its
    cached teachers; without it, the first ``view_epochs`` epochs write it
    and the later ones read it. After each epoch the rows read and written
    are logged. Resuming continues with the rows on disk.

    Args:
        dir: The cache's directory.
        dtype: Storage type, ``'float16'`` (default) or ``'float32'``.
        topk: Store only the ``topk`` largest values of wider records (large
            class counts; see :mod:`mmkd.distillers.teacher_cache`).
    """

    priority = 'VERY_HIGH'

    def __init__(self, dir: str, dtype: str = 'float16', topk: Optional[int] = None):
        self.dir = dir
        self.dtype = dtype
        self.topk = topk
        self.cache: Optional[TeacherCache] = None

    def open(self, runner) -> TeacherCache:
        """Check the run's data, open the cache and attach it to the distiller."""
        loader = runner.train_dataloader
        dataset, sampler = loader.dataset, loader.sampler
        if not isinstance(dataset, ReplayDataset) or not isinstance(sampler, ReplaySampler):
            raise TeacherCacheError(
                'a teacher cache needs views that can be replayed: the training set wrapped in '
                "dict(type='ReplayDataset', dataset=...) and sampler=dict(type='ReplaySampler', "
                f'view_epochs=...) (got {type(dataset).__name__} and {type(sampler).__name__}); '
                f'a top-level {CONFIG_KEY}=dict(dir=...) in the config sets both up through '
                'tools/train.py.')
        model = unwrap(runner.model)
        if not hasattr(model, 'attach_teacher_cache'):
            raise TeacherCacheError(f'{type(model).__name__} has no teachers to cache; a '
                                    'teacher cache serves a Distiller.')
        batch_augments = getattr(model.data_preprocessor, 'batch_augments', None)
        if batch_augments is not None:
            raise TeacherCacheError(
                f'the data preprocessor mixes the samples of a batch ({batch_augments}), and '
                'such views cannot be replayed sample by sample: drop batch_augments or the '
                'teacher cache.')
        dataset.check_replays()
        fields = model.teacher_cache_fields()
        fingerprint = cache_fingerprint(model, fields, dataset, sampler.view_epochs)
        self.cache = TeacherCache.open(self.dir, fingerprint, len(dataset), sampler.view_epochs,
                                       fields, self.dtype, self.topk)
        model.attach_teacher_cache(self.cache)
        coverage = self.cache.coverage()
        runner.logger.info(
            f'teacher cache {self.dir}: {", ".join(fields)} '
            f'({TeacherCache.bytes_per_row(fields, self.dtype, self.topk)} bytes per sample '
            f'and view), {len(coverage)} view epoch(s), '
            f'{100 * coverage.mean():.1f}% written')
        return self.cache

    def before_train(self, runner) -> None:
        self.open(runner)

    def after_train_epoch(self, runner) -> None:
        if self.cache is None:
            return
        self.cache.flush()
        counts = self.cache.take_counts()
        runner.logger.info(f'teacher cache: {counts["read"]} sample(s) read, '
                           f'{counts["written"]} computed by the teacher and stored')

    def after_train(self, runner) -> None:
        if self.cache is not None:
            self.cache.flush()


def apply_teacher_cache(cfg: Config) -> List[str]:
    """Turn a config's ``teacher_cache=dict(dir=..., view_epochs=..., seed=...,
    dtype=..., topk=...)`` into a :class:`ReplayDataset` around the training
    set, a :class:`ReplaySampler` (keeping the sampler's shuffle, seed and
    round-up) and a :class:`TeacherCacheHook`. ``view_epochs`` defaults to
    the run's epochs, ``seed`` (of the views) to the run's seed. Returns notes;
    a config without the entry is left alone."""
    settings = cfg.get(CONFIG_KEY)
    if not settings:
        return []
    settings = dict(settings)
    unknown = sorted(set(settings) - {*_HOOK_SETTINGS, 'view_epochs', 'seed'})
    if unknown or 'dir' not in settings:
        raise TeacherCacheError(
            f'{CONFIG_KEY}={settings}: give dir=<directory> and optionally view_epochs, seed, '
            f'dtype, topk{f" (unknown: {unknown})" if unknown else ""}.')
    loader = cfg.train_dataloader
    view_epochs = settings.get('view_epochs') or (cfg.get('train_cfg') or {}).get(
        'max_epochs') or 1
    seed = settings.get('seed')
    if seed is None:
        seed = (cfg.get('randomness') or {}).get('seed') or 0
    dataset = loader.dataset
    if str(dataset.get('type', '')).split('.')[-1] != 'ReplayDataset':
        loader.dataset = dict(type='mmkd.ReplayDataset', dataset=copy.deepcopy(dataset),
                              seed=seed)
    sampler = {k: v for k, v in dict(loader.get('sampler') or {}).items()
               if k in ('shuffle', 'seed', 'round_up')}
    loader.sampler = dict(type='mmkd.ReplaySampler', view_epochs=int(view_epochs), **sampler)
    hook = dict(type='mmkd.TeacherCacheHook',
                **{k: settings[k] for k in _HOOK_SETTINGS if k in settings})
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks') or []
                        if str(h.get('type')).split('.')[-1] != 'TeacherCacheHook'] + [hook]
    return [f'teacher cache in {settings["dir"]}: {view_epochs} view epoch(s) of seed {seed}']
