"""Teacher-free epochs measured: a training epoch of the student alone, of KD with the teacher
online, and of KD reading a written teacher cache, interleaved in one run.

Each leg trains one real epoch of its config (the configs' data loading, batch size and
optimizer; no validation, no checkpoints) and the iteration times that MMEngine's
``IterTimerHook`` logs are collected; the first ``--skip`` iterations of each epoch (data
workers starting) are left out. Legs run in turn, ``--rounds`` times. The cache must be
written first (``tools/cache_teacher.py``). The script prints a table and, with ``--out``,
writes it between ``<!-- cached-teacher:start -->`` and ``<!-- cached-teacher:end -->`` of that
page, with the accuracies of the zoo's online and cached KD entries (their metafile) and the
bytes a cache stores per sample.

Example:
    python tools/cache_teacher.py configs/kd/kd_resnet56_resnet8_fashionmnist_cached.py
    OMP_NUM_THREADS=1 python tools/benchmark/cached_teacher.py --rounds 2 --out docs/benchmark.md
"""
import argparse
import copy
import json
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
from typing import Dict, List

from mmengine.config import Config
from mmengine.runner import Runner

import mmkd  # noqa: F401  (mmkd:: configs, safe checkpoint loading)
from mmkd.benchmark.zoo import load_metafiles, replace_block
from mmkd.distillers import load_config
from mmkd.distillers.teacher_cache import TeacherCache
from mmkd.engine import apply_teacher_cache, fit_schedule_to_epochs
from mmkd.utils import register_all_modules, unwrap

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MARKS = ('<!-- cached-teacher:start -->', '<!-- cached-teacher:end -->')
ALONE, ONLINE, CACHED = 'student alone', 'KD, teacher online', 'KD, cached teacher'


def leg_config(path: str, cache: bool, work_dir: str) -> Config:
    """The config of a leg: one epoch, no validation, no checkpoints, no teacher evaluation."""
    cfg = load_config(path)
    if not cache:
        cfg.pop('teacher_cache', None)
    apply_teacher_cache(cfg)
    cfg.work_dir = work_dir
    planned = cfg.train_cfg.max_epochs
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1000)
    fit_schedule_to_epochs(cfg, planned)  # the warm-up and decay of a 1-epoch run
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks = dict(copy.deepcopy(cfg.default_hooks), checkpoint=None,
                             logger=dict(type='LoggerHook', interval=1000))
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks') or []
                        if 'TeacherEvaluationHook' not in str(h.get('type'))]
    cfg.log_level = 'WARNING'
    return cfg


def run_epoch(cfg: Config, skip: int) -> Dict[str, float]:
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    wall = time.perf_counter() - start
    cache = getattr(unwrap(runner.model), 'teacher_cache', None)
    if cache is not None and cache.take_counts()['written']:
        raise SystemExit(f'the teacher cache {cache.directory} was not complete (the epoch ran '
                         'the teacher): write it first with tools/cache_teacher.py.')
    times = [float(t) for t in runner.message_hub.get_scalar('train/time').data[0]]
    return {'iter_median': statistics.median(times[skip:]), 'epoch': sum(times),
            'wall': wall, 'iters': len(times)}


def bytes_table() -> List[str]:
    rows = [('10 (Fashion-MNIST, CIFAR-10)', 10, 'float16', None),
            ('10', 10, 'float32', None),
            ('1000 (ImageNet)', 1000, 'float16', None),
            ('1000', 1000, 'float16', 10),
            ('1000', 1000, 'float16', 5)]
    lines = ['| classes | storage | bytes per sample and view epoch | one view epoch of '
             'ImageNet-1k (1,281,167 images) |', '|---|---|---|---|']
    for label, classes, dtype, topk in rows:
        per_row = TeacherCache.bytes_per_row({'teacher.logits': classes}, dtype, topk)
        storage = f'{dtype}, ' + ('all logits' if topk is None else f'top-{topk} + log-sum-exp')
        lines.append(f'| {label} | {storage} | {per_row} | {per_row * 1281167 / 2**20:,.0f} MiB |')
    return lines


def accuracy_rows() -> List[str]:
    _, models = load_metafiles(REPO)
    rows = []
    for config in ('configs/kd/kd_resnet56_resnet8_fashionmnist.py',
                   'configs/kd/kd_resnet56_resnet8_fashionmnist_cached.py'):
        model = next((m for m in models.values() if m.get('Config') == config), None)
        if model is None:
            rows.append(f'| {osp.basename(config)} | not measured yet | - |')
            continue
        metrics = model['Results'][0]['Metrics']
        per_seed = model.get('Zoo', {}).get('Per Seed', {}).get('Top 1 Accuracy', {})
        shown = f"{metrics['Top 1 Accuracy']:.2f}"
        if 'Top 1 Accuracy Std' in metrics:
            shown += f" ± {metrics['Top 1 Accuracy Std']:.2f}"
        seeds = ', '.join(f'{v:.2f}' for v in per_seed.values()) or '-'
        rows.append(f'| {osp.basename(config)} | {shown} | {seeds} |')
    return rows


def format_block(results: Dict[str, List[Dict[str, float]]], args) -> str:
    alone = results[ALONE]
    lines = ['<!-- Generated by `python tools/benchmark/cached_teacher.py`; do not edit by hand. '
             '-->', '',
             '| leg | config | median iteration (s) | epoch (s) | iteration / student alone | '
             'epoch / student alone | epoch ratio per round |', '|---|---|---|---|---|---|---|']
    configs = {ALONE: args.student_config, ONLINE: args.config, CACHED: args.config}
    for leg, runs in results.items():
        # Ratios within a round (the legs ran back to back), then their median over rounds.
        iteration = [r['iter_median'] / a['iter_median'] for r, a in zip(runs, alone)]
        epoch = [r['epoch'] / a['epoch'] for r, a in zip(runs, alone)]
        lines.append(
            f'| {leg} | {osp.basename(configs[leg])} | '
            f'{statistics.median(r["iter_median"] for r in runs):.3f} | '
            f'{statistics.median(r["epoch"] for r in runs):.1f} | '
            f'{statistics.median(iteration):.2f} | {statistics.median(epoch):.2f} | '
            f'{", ".join(f"{x:.2f}" for x in epoch)} |')
    runs = results[ALONE][0]['iters']
    lines += ['', f'One epoch of {runs} iterations per leg and round, {args.rounds} round(s), the '
              f'legs in turn; median over iterations (the first {args.skip} of each epoch left '
              'out) and rounds; epoch: the sum of its iteration times (data loading included); '
              'ratios: to the student alone of the same round, median over rounds. '
              f'Measured {time.strftime("%Y-%m-%d")} with OMP_NUM_THREADS='
              f'{os.environ.get("OMP_NUM_THREADS", "unset")}.', '',
              '| config | top-1 (%) | per seed |', '|---|---|---|', *accuracy_rows(), '',
              'Top-1 on the 10,000 test images after the zoo protocol (15,000 training images, 4 '
              'epochs, seeds 0, 1, 2), from the zoo\'s metafile (`tools/benchmark/model_zoo.py`).',
              '', *bytes_table(), '',
              'Bytes stored per sample and view epoch (`TeacherCache.bytes_per_row`, the '
              'written flag included).']
    return '\n'.join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='configs/kd/kd_resnet56_resnet8_fashionmnist_cached.py',
                        help='a KD config with teacher_cache (written with tools/cache_teacher.py)')
    parser.add_argument('--student-config', default='configs/baselines/resnet8_fashionmnist.py',
                        help='the student trained alone')
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--skip', type=int, default=5, help='iterations left out per epoch')
    parser.add_argument('--json', default='work_dirs/benchmark/cached_teacher.json')
    parser.add_argument('--out', help='a page with the cached-teacher markers to write into')
    args = parser.parse_args(argv)
    register_all_modules(init_default_scope=False)
    legs = [(ALONE, args.student_config, False), (ONLINE, args.config, False),
            (CACHED, args.config, True)]
    results: Dict[str, List[Dict[str, float]]] = {leg: [] for leg, _, _ in legs}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for leg, path, cache in legs:
                result = run_epoch(leg_config(path, cache, osp.join(tmp, f'{round_}')), args.skip)
                results[leg].append(result)
                print(f'round {round_}: {leg}: median iteration {result["iter_median"]:.3f} s, '
                      f'epoch {result["epoch"]:.1f} s', file=sys.stderr)
    block = format_block(results, args)
    print(block)
    os.makedirs(osp.dirname(args.json) or '.', exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump({'results': results, 'config': args.config,
                   'student_config': args.student_config}, f, indent=1)
    if args.out:
        with open(args.out) as f:
            page = f.read()
        with open(args.out, 'w') as f:
            f.write(replace_block(page, block, args.out, MARKS))


if __name__ == '__main__':
    main()
