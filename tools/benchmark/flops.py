"""FLOPs of the overhead benchmark's legs against its measured time ratio.

For each config: the FLOPs (MMEngine's count, one multiply-add = one FLOP) of
(a) the students' (or cohort members') training steps alone, (b) the
teachers' inference and (c) the distillation step, on one random batch of
the config's size and the dataset's image shape (:mod:`mmkd.benchmark.flops`;
backward = 2 x forward for trained parts), the FLOP ratio c/(a+b) beside the
time ratio c/(a+b) the metafiles hold (``tools/benchmark/model_zoo.py
--overhead``), and where the method's own forward FLOPs run; then an op
census of one real call of each leg (ATen ops run, bytes written). Prints
Markdown; ``--out`` writes it to a file, or, into a page that has
``<!-- flops:start -->`` and ``<!-- flops:end -->``, between those.

A config may carry overrides after ``@``: ``PATH@model.order=synchronous``
(several joined by ``@``); such a variant has no metafile entry.

Example:
    python tools/benchmark/flops.py                         # the zoo's defaults
    python tools/benchmark/flops.py --out docs/benchmark.md # the docs' table
    python tools/benchmark/flops.py --configs configs/ofd/ofd_resnet56_resnet8_fashionmnist.py \
        --batch-size 32 --json flops.json
"""
import argparse
import json
import os.path as osp
import sys
from typing import List, Optional, Tuple

from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger

from mmkd.benchmark.flops import (
    BACKWARD_FACTOR,
    CENSUS_HEAD,
    MARK_START,
    TABLE_HEAD,
    census_row,
    count_legs,
    measured_ratios,
    replace_block,
    table_row,
)
from mmkd.distillers import load_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: The zoo's Fashion-MNIST configs whose costs the table explains (those that exist).
DEFAULT_CONFIGS = [
    'configs/kd/kd_resnet56_resnet8_fashionmnist.py',
    'configs/fitnets/fitnets_resnet56_resnet8_fashionmnist.py',
    'configs/ofd/ofd_resnet56_resnet8_fashionmnist.py',
    'configs/crd/crd_resnet56_resnet8_fashionmnist.py',
    'configs/reviewkd/reviewkd_resnet56_resnet8_fashionmnist.py',
    'configs/self_distillation/byot_resnet8_fashionmnist.py',
    'configs/dml/dml_resnet8x2_fashionmnist.py',
    'configs/dml/dml_resnet8x2_fashionmnist.py@model.order=synchronous',
]


def split_spec(spec: str) -> Tuple[str, List[str]]:
    """``PATH@KEY=VALUE@...`` -> the path and the overrides."""
    path, *overrides = spec.split('@')
    return path, overrides


def load_spec(spec: str) -> Config:
    """The config of a spec, overrides merged (values parsed as the command line's)."""
    path, overrides = split_spec(spec)
    if not osp.isfile(path) and osp.isfile(osp.join(REPO, path)):
        path = osp.join(REPO, path)
    cfg = load_config(path)
    if overrides:
        parsed = argparse.ArgumentParser()
        parsed.add_argument('--o', nargs='+', action=DictAction)
        cfg.merge_from_dict(parsed.parse_args(['--o', *overrides]).o)
    return cfg


def config_name(spec: str) -> str:
    """How the table names a config: its file name, then the overrides."""
    path, overrides = split_spec(spec)
    return ' '.join([osp.basename(path), *overrides])


def metafile_key(spec: str) -> Optional[str]:
    """The config as the metafiles name it (relative to the repository), if
    the spec has no overrides."""
    path, overrides = split_spec(spec)
    if overrides:
        return None
    return osp.relpath(osp.abspath(path) if osp.isfile(path) else osp.join(REPO, path), REPO)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--configs', nargs='+',
                        help='configs (PATH or PATH@key=value); default: the zoo\'s '
                        'Fashion-MNIST KD, FitNets, OFD, CRD, ReviewKD, BYOT and DML '
                        '(sequential and synchronous) configs')
    parser.add_argument('--batch-size', type=int, help="default: each config's train batch size")
    parser.add_argument('--shape', type=int, nargs=3, metavar=('C', 'H', 'W'),
                        help="image shape; default: the config's dataset's")
    parser.add_argument('--root', default=REPO,
                        help='where model-index.yml and the metafiles are (the time ratios)')
    parser.add_argument('--out', help='write the Markdown here (between the flops markers of '
                        'an existing page that has them)')
    parser.add_argument('--no-census', action='store_true',
                        help='skip the op census (one real call of each leg)')
    parser.add_argument('--json', help='also write every count to this JSON file')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> List[dict]:
    """Run the tool; returns the counts of every config."""
    args = parse_args(argv)
    if not MMLogger.check_instance_created('mmkd_benchmark'):  # no weight-init chatter
        MMLogger.get_instance('mmkd_benchmark', log_level='WARNING')
    specs = args.configs or [s for s in DEFAULT_CONFIGS
                             if osp.isfile(osp.join(REPO, split_spec(s)[0]))]
    ratios = measured_ratios(args.root)
    rows, census, counted, untrained = [], [], [], set()
    for spec in specs:
        legs = count_legs(load_spec(spec), args.batch_size, args.shape, config_name(spec),
                          census=not args.no_census)
        measured = ratios.get(metafile_key(spec))
        rows.append(table_row(legs, measured))
        if legs.census:
            census.append(census_row(legs, measured))
        untrained.update(legs.untrained)
        counted.append(legs.to_dict())
        print(f'[flops] {legs.config}: c/(a+b) {legs.ratio:.3f} in FLOPs', file=sys.stderr)
    options = [f'--configs {" ".join(args.configs)}' if args.configs else '',
               f'--batch-size {args.batch_size}' if args.batch_size else '',
               f'--shape {" ".join(map(str, args.shape))}' if args.shape else '',
               '--no-census' if args.no_census else '']
    command = ' '.join(['python tools/benchmark/flops.py', *filter(None, options)])
    sizes = '/'.join(sorted({str(c['batch_size']) for c in counted}))
    shapes = ', '.join(sorted({'x'.join(map(str, c['shape'])) for c in counted}))
    lines = [f'<!-- Generated by `{command}`; do not edit by hand. -->', '',
             *TABLE_HEAD, *rows, '',
             f'GFLOPs per batch of {sizes} random {shapes} (C x H x W) images; one multiply-add '
             'is one FLOP, as MMEngine\'s `FlopAnalyzer` counts (element-wise ops count '
             f'nothing). a: the trained nets\' steps alone, forward x {BACKWARD_FACTOR}; b: the '
             'teachers\' inference; c: the step, what it computes without grad (teachers, '
             f'recomputations) once, the rest x {BACKWARD_FACTOR}. own / trained: the method\'s '
             'own forward FLOPs over the trained nets\' forward. time c/(a+b): from the '
             'metafiles (`tools/benchmark/model_zoo.py --overhead`), - where they have none.'
             + (f' Built untrained (no checkpoint here): the teachers of '
                f'{", ".join(sorted(untrained))}.' if untrained else '')]
    if census:
        lines += ['', *CENSUS_HEAD, *census, '',
                  'One real call of each leg of the overhead benchmark (forward, backward, '
                  'update; after one untracked call) under a dispatch mode: the ATen ops run '
                  '(views left out) and the MiB their outputs hold (a measure of the memory '
                  'traffic, which element-wise ops make without FLOPs); most of c\'s extra '
                  'ops / MiB: the ops that c runs more often, or whose outputs hold more '
                  'MiB, than a and b together, most first.']
    text = '\n'.join(lines)
    print(text)
    if args.out:
        page = None
        if osp.isfile(args.out):
            with open(args.out) as f:
                page = f.read()
        written = replace_block(page, text) if page and MARK_START in page else text + '\n'
        with open(args.out, 'w') as f:
            f.write(written)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(counted, f, indent=1)
    return counted


if __name__ == '__main__':
    main()
