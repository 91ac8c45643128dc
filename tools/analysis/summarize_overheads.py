"""Summarise overhead measurements into a markdown table: one row per
``tools/benchmark/distill_overhead.py --out FILE.json`` result.

Example:
    python tools/analysis/summarize_overheads.py work_dirs/fs_overhead/*.json
"""
import argparse
import json
import os.path as osp


def overhead_row(result: dict) -> str:
    """One table row: the config, c / (a + b), its per-batch median and the trainable
    parameters distillation adds."""
    median = result.get('ratio_per_batch_median')
    return (f'| {osp.basename(result["config"])} | {result["ratio"]:.2f} | '
            f'{"-" if median is None else f"{median:.2f}"} | '
            f'{result["parameters"]["extra_trainable"]:,} |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('results', nargs='+', help='JSON files of distill_overhead.py --out')
    args = parser.parse_args()
    print('| config | c / (a + b) | per-batch median | extra trainable params |')
    print('|---|---|---|---|')
    for path in args.results:
        with open(path) as f:
            print(overhead_row(json.load(f)))


if __name__ == '__main__':
    main()
