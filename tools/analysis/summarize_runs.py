"""Summarise runs into a markdown table: final and best top-1, mean ± std over seeds.

Runs are grouped by the name before ``_seed`` (``work_dirs/zoo/kd_r8_seed1`` belongs to
group ``kd_r8``). The final top-1 is the last validation of a run; the ``epochs`` column
shows the epoch of that validation, so an unfinished run stands out.

Example:
    python tools/analysis/summarize_runs.py work_dirs/zoo/*
"""
import argparse
import os.path as osp
import re
import sys
from collections import OrderedDict

from mmkd.analysis.runs import mean_std, read_run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dirs', nargs='+')
    parser.add_argument('--metric', default='accuracy/top1')
    args = parser.parse_args()
    groups = OrderedDict()
    for work_dir in args.work_dirs:
        if not osp.isdir(work_dir):
            continue
        run = read_run(work_dir, args.metric)
        if run is None:
            print(f'skipping {work_dir}: no {args.metric} logged yet', file=sys.stderr)
            continue
        name = re.sub(r'_seed\d+$', '', osp.basename(osp.normpath(work_dir)))
        groups.setdefault(name, []).append(run)
    print(f'| run | seeds | epochs | final {args.metric} | best {args.metric} | teacher |')
    print('|---|---|---|---|---|---|')
    for name, runs in groups.items():
        teachers = [r['teacher'] for r in runs if r['teacher'] is not None]
        epochs = sorted({str(r['epoch']) for r in runs})
        print(f'| {name} | {len(runs)} | {"/".join(epochs)} | '
              f'{mean_std([r["final"] for r in runs])} | '
              f'{mean_std([r["best"] for r in runs])} | '
              f'{mean_std(teachers) if teachers else "-"} |')


if __name__ == '__main__':
    main()
