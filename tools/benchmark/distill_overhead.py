"""Time a config's training step against its limit, in one interleaved run.

For a distiller: (a) the student's training step alone, (b) each teacher's
inference, (c) the distillation step, on the same batches, round-robin.
Prints the median and IQR of each, the ratio c / (a + b), peak memory and
the parameters that distillation adds. A cohort's limit is the sum of its
members' training steps; a plain config gives (a) only.

Example:
    python tools/benchmark/distill_overhead.py configs/kd/kd_resnet56_resnet8_fashionmnist.py \
        --batch-size 128 --iters 20
    python tools/benchmark/distill_overhead.py <config> --amp --channels-last --out result.json
"""
import argparse
import json
import sys

from mmengine.config import DictAction
from mmengine.logging import MMLogger

import mmkd  # noqa: F401  (mmkd:: configs)
from mmkd.benchmark import measure_overhead
from mmkd.distillers import load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file (a path or mmkd::/mmpretrain::... )')
    parser.add_argument('--batch-size', type=int, help="default: the config's train batch size")
    parser.add_argument('--iters', type=int, default=20, help='timed rounds')
    parser.add_argument('--warmup', type=int, default=3, help='untimed rounds first')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (bf16 autocast on CPU, AmpOptimWrapper on GPU)')
    parser.add_argument('--channels-last', action='store_true',
                        help='nets in channels-last memory format')
    parser.add_argument('--threads', type=int, help='torch intra-op threads (default: as set)')
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory pass')
    parser.add_argument('--out', help='also write the figures (and every time) to this JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. model.teacher.checkpoint=...')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not MMLogger.check_instance_created('mmkd_benchmark'):  # no weight-init chatter
        MMLogger.get_instance('mmkd_benchmark', log_level='WARNING')
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    result = measure_overhead(cfg, batch_size=args.batch_size, warmup=args.warmup,
                              iters=args.iters, amp=args.amp, channels_last=args.channels_last,
                              memory=not args.no_memory, threads=args.threads)
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
