"""Write a config's teacher cache once, so that training never runs the teacher.

The config names the cache (``teacher_cache = dict(dir=..., view_epochs=...)``,
or ``--dir`` / ``--epochs`` here); the teacher runs over ``view_epochs`` epochs
of the training set's replayed views and its records are stored. An
interrupted run continues where it stopped (rows already written are skipped);
a cache written for another teacher, dataset, pipeline or seed is refused.
``tools/train.py`` with the same config then reads the cache.

Example:
    python tools/cache_teacher.py configs/kd/kd_resnet56_resnet8_fashionmnist_cached.py
    python tools/cache_teacher.py <config> --dir work_dirs/cache/r56 --epochs 4
"""
import argparse
import os
import os.path as osp
import time
from typing import List, Optional

from mmengine.config import DictAction
from mmengine.runner import Runner
from mmengine.utils import ProgressBar

import mmkd  # noqa: F401  (mmkd:: configs, safe checkpoint loading)
from mmkd.distillers import load_config
from mmkd.distillers.teacher_cache import TeacherCache, view_keys
from mmkd.engine import TeacherCacheHook, apply_teacher_cache
from mmkd.utils import (
    exit_after_distributed_run,
    finish_distributed,
    register_all_modules,
    setup_cpu_distributed,
    unwrap,
)


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description="Store a teacher's outputs for every "
                                     'training view (teacher-free training later)')
    parser.add_argument('config', help='a distillation config')
    parser.add_argument('--dir', help="the cache's directory (default: the config's "
                        'teacher_cache.dir)')
    parser.add_argument('--epochs', type=int,
                        help='epochs of views to store (default: teacher_cache.view_epochs, '
                        "else the config's epochs)")
    parser.add_argument('--work-dir', help='where the log goes')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv: Optional[List[str]] = None) -> TeacherCache:
    args = parse_args(argv)
    register_all_modules(init_default_scope=False)
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    settings = dict(cfg.get('teacher_cache') or {})
    if args.dir:
        settings['dir'] = args.dir
    if args.epochs:
        settings['view_epochs'] = args.epochs
    if 'dir' not in settings:
        raise SystemExit(f'{args.config} has no teacher_cache=dict(dir=...): pass --dir '
                         '<directory> (and --epochs E).')
    cfg.teacher_cache = settings
    apply_teacher_cache(cfg)
    cfg.work_dir = args.work_dir or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0] + '_cache_teacher')
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.custom_hooks = [h for h in cfg.custom_hooks
                        if str(h.get('type')).split('.')[-1] == 'TeacherCacheHook']
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks if isinstance(h, TeacherCacheHook))
    cache = hook.open(runner)
    model = unwrap(runner.model)
    loader = runner.train_dataloader
    view_epochs = loader.sampler.view_epochs
    show = runner.rank == 0
    progress = ProgressBar(view_epochs * len(loader)) if show else None
    start, stored = time.perf_counter(), 0
    for view_epoch in range(view_epochs):
        loader.sampler.set_epoch(view_epoch)
        for batch in loader:
            data = model.data_preprocessor(batch, True)
            keys = view_keys(data['data_samples'])
            if not cache.has(keys):
                model.fill_teacher_cache(data['inputs'], data['data_samples'])
                stored += len(keys)
            if progress is not None:
                progress.update()
        cache.flush()
    seconds = time.perf_counter() - start
    coverage = cache.coverage()
    runner.logger.info(
        f'\nteacher cache {cache.directory}: stored {stored} sample view(s) in {seconds:.1f} s; '
        f'{100 * coverage.mean():.1f}% of {view_epochs} view epoch(s) x {cache.num_samples} '
        f'samples written; {TeacherCache.bytes_per_row(cache.widths, cache.dtype, cache.topk)} '
        'bytes per sample and view epoch.')
    finish_distributed()
    return cache


if __name__ == '__main__':
    main()
    exit_after_distributed_run()
