"""Compare runs by the knowledge-quantification metrics of Cheng et al. (CVPR 2020).

Reads ``knowledge_quantification.json`` (written by ``KnowledgeQuantificationHook``) from
each work dir, recomputes N_fg, N_bg, lambda, D_mean, D_std and rho from the stored entropy
maps (so ``--threshold`` can change b), averages them over the seeds of each method and
prints a markdown table. With ``--out-dir`` it also draws PNG files:
``entropy_maps.png`` (entropy over the probe images, concepts outlined) and
``concept_counts.png`` (foreground / background concepts and weight distance per epoch).

Runs are given as ``NAME=PATTERN`` (a glob of work dirs) or as plain work dirs, grouped by
their name without ``_seedN``.

Example:
    python tools/analysis/quantify_knowledge.py \
        baseline='work_dirs/knowledge_quantification/kq_resnet8_seed*' \
        KD='work_dirs/knowledge_quantification/kq_kd_resnet56_resnet8_seed*' \
        --out-dir docs/images/knowledge_quantification
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import re
import sys
from collections import OrderedDict
from typing import Dict, List, Optional

import torch

from mmkd.analysis import count_concepts, summarize_knowledge
from mmkd.analysis.runs import mean_std, read_run

JSON_NAME = 'knowledge_quantification.json'
COLUMNS = ['N_fg', 'N_bg', 'lambda', 'H_fg-H_bg', 'D_mean', 'D_std', 'rho']


def load_run(work_dir: str, threshold: Optional[float] = None) -> Optional[dict]:
    """One run's record, its summary recomputed with ``threshold`` (b)."""
    path = osp.join(work_dir, JSON_NAME)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    b = record['settings']['concept_threshold'] if threshold is None else threshold
    foreground = torch.tensor(record['foreground']).bool()
    epochs = record['student']['epochs']
    if not epochs:
        return None
    entropy = [torch.tensor(e['entropy']) for e in epochs]
    summary = summarize_knowledge(entropy, foreground, [e['weight_distance'] for e in epochs], b)
    counts = [count_concepts(h, foreground, b) for h in entropy]
    teachers = OrderedDict()
    for prefix, measured in recorded_teachers(record).items():
        t_entropy = torch.tensor(measured['entropy'])
        teachers[prefix] = dict(entropy=t_entropy,
                                summary=summarize_knowledge([t_entropy], foreground, None, b),
                                concepts=count_concepts(t_entropy, foreground, b).concepts)
    top1 = read_run(work_dir, 'accuracy/top1')
    return dict(work_dir=work_dir, record=record, summary=summary, foreground=foreground,
                entropy=entropy, counts=counts, teachers=teachers, b=b,
                epochs=[e['epoch'] for e in epochs],
                distances=record['student']['weight_distance'],
                top1=top1['final'] if top1 else math.nan,
                overhead=record['timing'].get('overhead', math.nan))


def recorded_teachers(record: dict) -> Dict[str, dict]:
    """The measured teachers of a record by log prefix (``'teacher'``, ``'teacher/<name>'``);
    records written before ``teachers`` existed hold one ``teacher`` at most."""
    if record.get('teachers'):
        return record['teachers']
    return {'teacher': record['teacher']} if record.get('teacher') else {}


def first_teachers(groups: Dict[str, List[dict]]) -> Dict[str, dict]:
    """Each teacher once, from the first run that measured it."""
    found: Dict[str, dict] = OrderedDict()
    for runs in groups.values():
        for run in runs:
            for prefix, teacher in run['teachers'].items():
                found.setdefault(prefix, teacher)
    return found


def group_runs(specs: List[str]) -> Dict[str, List[str]]:
    """``NAME=PATTERN`` or plain dirs -> work dirs by method name."""
    groups: Dict[str, List[str]] = OrderedDict()
    for spec in specs:
        if '=' in spec:
            name, pattern = spec.split('=', 1)
            dirs = sorted(glob.glob(pattern)) or [pattern]
        else:
            name = re.sub(r'_seed\d+$', '', osp.basename(osp.normpath(spec)))
            dirs = [spec]
        groups.setdefault(name, []).extend(dirs)
    return groups


def table(groups: Dict[str, List[dict]]) -> str:
    """The markdown table: one row per method, the teachers first."""
    header = ['method', 'seeds', 'top-1', 'N_fg ↑', 'N_bg ↓', 'λ ↑', 'H_fg−H_bg',
              'D_mean ↓', 'D_std ↓', 'ρ ↑', 'hook time']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for prefix, teacher in first_teachers(groups).items():
        s = teacher['summary']
        lines.append(f'| {prefix} | - | - | {s["N_fg"]:.2f} | {s["N_bg"]:.2f} | '
                     f'{s["lambda"]:.3f} | {s["H_fg-H_bg"]:.3f} | - | - | - | - |')
    for name, runs in groups.items():
        cells = [name, str(len(runs)), mean_std([r['top1'] for r in runs])]
        for key in COLUMNS:
            digits = 3 if key in ('lambda', 'rho', 'H_fg-H_bg', 'D_mean', 'D_std') else 2
            cells.append(mean_std([r['summary'][key] for r in runs], digits))
        cells.append(mean_std([100 * r['overhead'] for r in runs], 1) + ' %')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _outline(ax, concepts: torch.Tensor, foreground: torch.Tensor, cell: float) -> None:
    from matplotlib.patches import Rectangle
    for (row, col) in concepts.nonzero().tolist():
        color = 'red' if foreground[row, col] else 'deepskyblue'
        ax.add_patch(Rectangle((col * cell - 0.5, row * cell - 0.5), cell, cell, fill=False,
                               edgecolor=color, linewidth=1.2))


def plot_entropy_maps(groups: Dict[str, List[dict]], path: str, num_images: int = 6) -> None:
    """Inputs, then the final entropy map of each teacher and of each method's first seed."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    first = next(iter(groups.values()))[0]
    images = torch.tensor(first['record']['images'], dtype=torch.float)
    num_images = min(num_images, len(images))
    size = images.shape[-1]
    rows = [('input', None, None)]
    for prefix, teacher in first['teachers'].items():
        rows.append((prefix, teacher['entropy'], teacher['concepts']))
    for name, runs in groups.items():
        rows.append((name, runs[0]['entropy'][-1], runs[0]['counts'][-1].concepts))
    maps = torch.stack([r[1] for r in rows if r[1] is not None])[:, :num_images]
    low, high = maps.min().item(), maps.max().item()
    fig, axes = plt.subplots(len(rows), num_images, figsize=(1.6 * num_images, 1.7 * len(rows)),
                             squeeze=False)
    for r, (name, entropy, concepts) in enumerate(rows):
        for i in range(num_images):
            ax = axes[r][i]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(images[i], cmap='gray', vmin=0, vmax=255)
            if entropy is not None:
                grid = entropy.shape[-1]
                cell = size / grid
                shown = ax.imshow(entropy[i], cmap='viridis', vmin=low, vmax=high, alpha=0.75,
                                  extent=(-0.5, size - 0.5, size - 0.5, -0.5))
                _outline(ax, concepts[i], first['foreground'][i], cell)
            if i == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle('entropy per cell at the last epoch (low = used by the layer); concepts: '
                 'red = foreground, blue = background', fontsize=9)
    fig.colorbar(shown, ax=axes, shrink=0.6, label='entropy (nats)')
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_concept_counts(groups: Dict[str, List[dict]], path: str) -> None:
    """N_fg, N_bg and the weight distance D per epoch, mean ± std over seeds."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, runs in groups.items():
        epochs = runs[0]['epochs']
        for ax, key in zip(axes[:2], ('n_fg', 'n_bg')):
            per_seed = torch.stack([torch.stack([getattr(c, key).float().mean()
                                                 for c in r['counts']]) for r in runs])
            mean, std = per_seed.mean(0), per_seed.std(0, unbiased=False)
            line, = ax.plot(epochs, mean, marker='o', label=name)
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.2, color=line.get_color())
        distances = torch.tensor([r['distances'] for r in runs])
        axes[2].plot(range(distances.shape[1]), distances.mean(0), marker='o', label=name)
    styles = ['--', ':', '-.', (0, (5, 1, 1, 1))]
    for i, (prefix, teacher) in enumerate(first_teachers(groups).items()):
        style = styles[i % len(styles)]
        axes[0].axhline(teacher['summary']['N_fg'], color='k', ls=style, label=prefix)
        axes[1].axhline(teacher['summary']['N_bg'], color='k', ls=style, label=prefix)
    titles = ('foreground concepts N_fg per image', 'background concepts N_bg per image',
              'weight distance D (sum of ||w_k - w_k-1|| / ||w_0||)')
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('epoch')
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('runs', nargs='+', help='NAME=GLOB or work dirs')
    parser.add_argument('--threshold', type=float, default=None,
                        help='b of the concept rule (default: the one the hook used)')
    parser.add_argument('--out-dir', help='where to write the PNG plots')
    parser.add_argument('--num-images', type=int, default=6, help='images in entropy_maps.png')
    args = parser.parse_args()
    groups: Dict[str, List[dict]] = OrderedDict()
    for name, dirs in group_runs(args.runs).items():
        for work_dir in dirs:
            run = load_run(work_dir, args.threshold)
            if run is None:
                print(f'skipping {work_dir}: no {JSON_NAME} with a measured epoch',
                      file=sys.stderr)
                continue
            groups.setdefault(name, []).append(run)
    if not groups:
        parser.error(f'none of the runs has a {JSON_NAME}; add KnowledgeQuantificationHook '
                     f'to their configs (see configs/knowledge_quantification).')
    print(table(groups))
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        plot_entropy_maps(groups, osp.join(args.out_dir, 'entropy_maps.png'), args.num_images)
        plot_concept_counts(groups, osp.join(args.out_dir, 'concept_counts.png'))
        print(f'\nplots: {args.out_dir}/entropy_maps.png, {args.out_dir}/concept_counts.png',
              file=sys.stderr)


if __name__ == '__main__':
    main()
