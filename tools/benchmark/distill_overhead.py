"""Time a config's training step against its limit, in one interleaved run.

For a distiller: (a) the student's training step alone, (b) each teacher's
inference, (c) the distillation step, on the same batches, round-robin, and
reference legs (r): each teacher as built, without its fast path, and, for
KD on logits, the same KD step written in plain eager PyTorch. Prints the
median and IQR of each, the ratio c / (a + b), each leg over its reference,
peak memory and the parameters that distillation adds. A cohort's limit is the sum of its
members' training steps; a plain config gives (a) only. The legs and the
report are :mod:`mmkd.benchmark`; this script loads the config, its batches
and its model, and runs them.

Example:
    python tools/benchmark/distill_overhead.py configs/kd/kd_resnet56_resnet8_fashionmnist.py \
        --batch-size 128 --iters 20
    python tools/benchmark/distill_overhead.py <config> --amp --channels-last --out result.json
    python tools/benchmark/distill_overhead.py <config> --threads 1 --clock cpu \
        --cfg-options model.teacher_fast_path=False      # the teacher as built
"""
import argparse
import copy
import json
import sys
from typing import Callable, Dict, List, Optional, TextIO, Union

import torch
from mmengine.config import Config, DictAction
from mmengine.device import get_device
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import mmkd  # noqa: F401  (mmkd:: configs)
from mmkd.benchmark import (
    CLOCKS,
    BenchContext,
    OverheadResult,
    count_parameters,
    legs_for,
    peak_memory_of,
    time_legs,
)
from mmkd.distillers import build_model_from_config, load_config
from mmkd.distillers.memory_format import to_channels_last
from mmkd.engine import mixed_precision_cfg
from mmkd.utils import register_all_modules

Progress = Callable[[int, int, int, Dict[str, float]], None]


def load_batches(cfg: Config, count: int, batch_size: Optional[int] = None) -> List[dict]:
    """The first ``count`` batches of the config's training dataloader
    (built in this process, shuffled with seed 0).

    Args:
        cfg: The config (its ``train_dataloader``).
        count: How many batches at most.
        batch_size: Overrides the dataloader's.

    Returns:
        The raw batches.
    """
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    loader_cfg.update(num_workers=0, persistent_workers=False)
    if batch_size is not None:
        loader_cfg['batch_size'] = batch_size
    batches = []
    for batch in Runner.build_dataloader(loader_cfg, seed=0):
        batches.append(batch)
        if len(batches) == count:
            break
    if not batches:
        raise ValueError('the training dataloader of the config gave no batch.')
    return batches


def progress_printer(stream: TextIO = sys.stderr) -> Progress:
    """Prints one progress line per round (rewritten in place on a terminal,
    about five lines per phase otherwise)."""
    tty = stream.isatty()

    def show(done: int, total: int, warmup: int, last: Dict[str, float]) -> None:
        phase = 'warm-up' if done <= warmup else 'timed'
        count = done if done <= warmup else done - warmup
        of = warmup if done <= warmup else total - warmup
        legs = '  '.join(f'{k} {v:.3f}s' for k, v in last.items())
        line = f'[overhead] {phase} {count}/{of}  {legs}'
        if tty:
            stream.write('\r' + line.ljust(100) + ('\n' if done == total else ''))
        elif done == total or done == warmup or count % max(1, of // 5) == 0:
            stream.write(line + '\n')
        stream.flush()

    return show


def measure_overhead(cfg: Union[str, Config], batch_size: Optional[int] = None,
                     warmup: int = 3, iters: int = 20, amp: bool = False,
                     channels_last: bool = False, device: Optional[str] = None,
                     max_batches: int = 32, memory: bool = True, threads: Optional[int] = None,
                     progress: Union[bool, Progress] = True, clock: str = 'wall'
                     ) -> OverheadResult:
    """Measure the overhead of a config's training step over its limit.

    Args:
        cfg: Config (or its path, ``mmkd::`` paths included).
        batch_size: Overrides the training dataloader's.
        warmup: Untimed rounds.
        iters: Timed rounds.
        amp: Mixed precision: the config's optim wrapper through
            :func:`~mmkd.engine.mixed_precision_cfg` (bf16 autocast on CPU);
            inference legs autocast alike.
        channels_last: Every net (and so its activations) in channels-last
            (without it: as the model sets it; a distiller trains its student
            in channels-last and its teachers' fast path may use it).
        device: Default: the device MMEngine would train on.
        max_batches: Distinct batches loaded (reused cyclically).
        memory: Also measure each leg's peak memory (one untimed call each).
        threads: ``torch.set_num_threads`` for the run (default: as set).
        progress: Print progress to stderr (or a callable, see
            :func:`~mmkd.benchmark.time_legs`).
        clock: ``'wall'`` (elapsed time) or ``'cpu'`` (the process's CPU
            time: steadier on a busy machine; for CPU runs).

    Returns:
        :class:`~mmkd.benchmark.OverheadResult`; ``print(result.format())``
        shows it.
    """
    register_all_modules(init_default_scope=False)
    if clock not in CLOCKS:
        raise ValueError(f'clock must be one of {sorted(CLOCKS)}; got {clock!r}.')
    path = cfg if isinstance(cfg, str) else (cfg.filename or '<config>')
    cfg = load_config(cfg) if isinstance(cfg, str) else cfg
    device = device or get_device()
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmkd')):
        batches = load_batches(cfg, min(max_batches, warmup + iters), batch_size)
        model = build_model_from_config(cfg).to(device)
        if channels_last:  # strided 1x1 convs kept contiguous (see to_channels_last)
            to_channels_last(model, trained=True)
        optim_cfg = copy.deepcopy(cfg.optim_wrapper.to_dict() if hasattr(
            cfg.optim_wrapper, 'to_dict') else dict(cfg.optim_wrapper))
        amp_dtype = None
        if amp:
            optim_cfg = mixed_precision_cfg(optim_cfg, device.split(':')[0])
            amp_dtype = getattr(torch, str(optim_cfg.get('dtype') or 'float16'))
        legs = legs_for(model, BenchContext(optim_cfg, device, amp_dtype), batches[0])
        show = progress_printer() if progress is True else (progress or None)
        results = time_legs(legs, batches, warmup, iters, device, show, CLOCKS[clock])
        if memory:
            for leg, result in zip(legs, results):
                prepared = leg.prepare(batches[0])
                result.peak_memory = peak_memory_of(lambda: leg.run(prepared), device)
    first = batches[0]['inputs']
    size = len(first) if isinstance(first, (list, tuple)) else first.shape[0]
    settings = dict(device=device, threads=torch.get_num_threads(), batch_size=size,
                    warmup=warmup, iters=iters,
                    precision=f'autocast {amp_dtype}'.replace('torch.', '') if amp else 'fp32',
                    memory_format='every net channels-last' if channels_last else
                    'as the model sets it', clock=clock)
    return OverheadResult(path, results, count_parameters(model), settings)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file (a path or mmkd::/mmpretrain::... )')
    parser.add_argument('--batch-size', type=int, help="default: the config's train batch size")
    parser.add_argument('--iters', type=int, default=20, help='timed rounds')
    parser.add_argument('--warmup', type=int, default=3, help='untimed rounds first')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (bf16 autocast on CPU, AmpOptimWrapper on GPU)')
    parser.add_argument('--channels-last', action='store_true',
                        help='every net in channels-last memory format (default: as the '
                        'model sets it)')
    parser.add_argument('--threads', type=int, help='torch intra-op threads (default: as set)')
    parser.add_argument('--clock', choices=sorted(CLOCKS), default='wall',
                        help='time legs by elapsed (wall) or CPU time of the process (cpu: '
                        'steadier on a shared machine; use with --threads 1 on CPU)')
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory pass')
    parser.add_argument('--out', help='also write the figures (and every time) to this JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. model.teacher.checkpoint=...')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    """Run the tool; returns the figures it printed (and wrote with ``--out``)."""
    args = parse_args(argv)
    if not MMLogger.check_instance_created('mmkd_benchmark'):  # no weight-init chatter
        MMLogger.get_instance('mmkd_benchmark', log_level='WARNING')
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    result = measure_overhead(cfg, batch_size=args.batch_size, warmup=args.warmup,
                              iters=args.iters, amp=args.amp, channels_last=args.channels_last,
                              memory=not args.no_memory, threads=args.threads,
                              clock=args.clock)
    result.config = args.config
    print(result.format())
    sys.stdout.flush()
    figures = result.to_dict()
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(figures, f, indent=1)
    return figures


if __name__ == '__main__':
    main()
