"""The model zoo: every method's Fashion-MNIST config over 3 seeds, in docs/model_zoo.md.

For each entry of ``ZOO`` and each seed the run lives in
``work_dirs/zoo/<name>_seed<S>``. A run counts as finished when its final
checkpoint (``epoch_<max_epochs>.pth``) exists and its log has the final
validation; finished runs are reused, never retrained. Missing runs are
listed with the command that makes them (``--submit`` hands them to the
shared measurement queue instead).

The page holds, per method: top-1 mean ± std over seeds, the gain over the
baseline student, training time (from each run's own log: mean iteration
time x iterations), the overhead ratio c / (a + b) of
``tools/benchmark/distill_overhead.py`` (cached in
``work_dirs/zoo/overhead/<name>.json``; ``--overhead`` measures the missing
ones) and the trainable parameters distillation adds. It also draws
accuracy against training time (``docs/model_zoo.png``) and keeps its log
beside the page (``docs/model_zoo.log``).

Example:
    python tools/benchmark/model_zoo.py                      # page from finished runs
    python tools/benchmark/model_zoo.py --overhead --iters 20  # also measure overheads
    python tools/benchmark/model_zoo.py --submit              # queue the missing runs
"""
import argparse
import glob
import json
import logging
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))
from summarize_runs import read_run  # noqa: E402


@dataclass
class ZooEntry:
    """One method in the zoo.

    Args:
        name: Run name; runs are ``work_dirs/zoo/<name>_seed<S>``.
        method: What the page calls it (with the paper).
        config: The config file, relative to the repository.
        baseline: Entry whose mean top-1 the gain is measured against
            (``None`` for a baseline itself).
        metric: The logged top-1 of the student (a cohort logs one per member).
    """
    name: str
    method: str
    config: str
    baseline: Optional[str] = 'resnet8'
    metric: str = 'accuracy/top1'


# Add a line when a method lands. Students are ResNet-8 (the cheapest net), teachers
# ResNet-56 (89.01 top-1 alone); the setting is configs/_base_/datasets/fashion_mnist_15k.py
# (15k training images) with configs/_base_/schedules/sgd_cosine_4e.py (4 epochs).
ZOO: List[ZooEntry] = [
    ZooEntry('resnet8', 'ResNet-8 alone (baseline)', 'configs/baselines/resnet8_fashionmnist.py',
             baseline=None),
    ZooEntry('kd_resnet56_resnet8', 'KD (Hinton et al., 2015)',
             'configs/kd/kd_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('ofd_resnet56_resnet8', 'OFD (Heo et al., 2019)',
             'configs/ofd/ofd_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('fitnets_resnet56_resnet8', 'FitNets (Romero et al., 2015)',
             'configs/fitnets/fitnets_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('fsp_resnet56_resnet8', 'FSP (Yim et al., 2017)',
             'configs/fsp/fsp_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('reviewkd_resnet56_resnet8', 'ReviewKD (Chen et al., 2021)',
             'configs/reviewkd/reviewkd_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('rkd_kd_resnet56_resnet8', 'RKD + KD (Park et al., 2019)',
             'configs/rkd/rkd_kd_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('mt_arithmetic_resnet56_resnet20_resnet8', 'Multi-teacher KD, arithmetic mean',
             'configs/multi_teacher/mt_arithmetic_resnet56_resnet20_resnet8_fashionmnist.py'),
    ZooEntry('mt_geometric_resnet56_resnet20_resnet8', 'Multi-teacher KD, geometric mean',
             'configs/multi_teacher/mt_geometric_resnet56_resnet20_resnet8_fashionmnist.py'),
    ZooEntry('byot_resnet8', 'Be Your Own Teacher (Zhang et al., 2019)',
             'configs/self_distillation/byot_resnet8_fashionmnist.py'),
    ZooEntry('dml_resnet8x2', 'DML, 2 x ResNet-8 (Zhang et al., 2018), member 1',
             'configs/dml/dml_resnet8x2_fashionmnist.py', metric='resnet8_1/accuracy/top1'),
    ZooEntry('dml_resnet8x3', 'DML, 3 x ResNet-8, member 1',
             'configs/dml/dml_resnet8x3_fashionmnist.py', metric='resnet8_1/accuracy/top1'),
]
SEEDS = (0, 1, 2)
ZOO_DIR = 'work_dirs/zoo'
QUEUE = '/tmp/mmkd_queue/submit'

log = logging.getLogger('model_zoo')


def train_command(entry: ZooEntry, seed: int) -> str:
    return (f'python tools/train.py {entry.config} --work-dir {run_dir(entry, seed)} '
            f'--cfg-options randomness.seed={seed}')


def run_dir(entry: ZooEntry, seed: int) -> str:
    return osp.join(ZOO_DIR, f'{entry.name}_seed{seed}')


def queued_names() -> set:
    """Names of the jobs handed to the measurement queue, finished or not."""
    jobs = osp.join(osp.dirname(QUEUE), 'jobs.txt')
    if not osp.isfile(jobs):
        return set()
    with open(jobs) as f:
        return {line.split('\t', 1)[0] for line in f if line.strip()}


def max_epochs_of(config: str) -> int:
    """Epochs of a run: ``train_cfg.max_epochs``, or the sum of a staged loop's stages."""
    from mmkd.distillers import load_config
    train_cfg = load_config(config).train_cfg
    if 'max_epochs' in train_cfg:
        return int(train_cfg.max_epochs)
    return int(sum(stage['epochs'] for stage in train_cfg.get('stages', [])))


def train_time(work_dir: str) -> Optional[Dict[str, float]]:
    """Seconds per training iteration (mean of the logged windows) and the
    training time it gives over all iterations of the run; plus wall time
    from the first to the last line of the log (validation included)."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.log')))
    scalars = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not logs or not scalars:
        return None
    times = []
    for path in scalars:
        with open(path) as f:
            times += [r['time'] for r in map(json.loads, f) if 'loss' in r and 'time' in r]
    iters_per_epoch = epochs = None
    stamps = []
    for path in logs:
        with open(path) as f:
            for line in f:
                found = re.search(r'Epoch\(train\)\s*\[(\d+)\]\[\s*\d+/(\d+)\]', line)
                if found:
                    epochs, iters_per_epoch = int(found.group(1)), int(found.group(2))
                stamp = re.match(r'(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)', line)
                if stamp:
                    stamps.append(datetime.strptime(stamp.group(1), '%Y/%m/%d %H:%M:%S'))
    if not times or not iters_per_epoch:
        return None
    per_iter = statistics.mean(times)
    return dict(s_per_iter=per_iter, train_s=per_iter * iters_per_epoch * epochs,
                wall_s=(stamps[-1] - stamps[0]).total_seconds() if stamps else float('nan'))


def finished_runs(entry: ZooEntry) -> Dict[int, dict]:
    """Seed -> figures of each finished run of ``entry``."""
    epochs = max_epochs_of(entry.config)
    runs = {}
    for seed in SEEDS:
        work_dir = run_dir(entry, seed)
        if not osp.isfile(osp.join(work_dir, f'epoch_{epochs}.pth')):
            continue
        result = read_run(work_dir, entry.metric)
        if result is None or result['epoch'] != epochs:
            log.info('%s: checkpoint of epoch %d but no final %s in its log; not reused',
                     work_dir, epochs, entry.metric)
            continue
        runs[seed] = dict(result, **(train_time(work_dir) or {}))
    return runs


def overhead_of(entry: ZooEntry, measure: bool, iters: int) -> Optional[dict]:
    """The cached overhead figures of ``entry``, measured first if asked."""
    path = osp.join(ZOO_DIR, 'overhead', f'{entry.name}.json')
    if not osp.isfile(path) and measure:
        os.makedirs(osp.dirname(path), exist_ok=True)
        command = [sys.executable, osp.join('tools', 'benchmark', 'distill_overhead.py'),
                   entry.config, '--iters', str(iters), '--out', path]
        log.info('measuring overhead: %s', ' '.join(command))
        done = subprocess.run(command, capture_output=True, text=True)
        log.info('%s', done.stdout.strip())
        if done.returncode != 0:
            log.warning('overhead of %s failed:\n%s', entry.name, done.stderr[-2000:])
            return None
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def mean_std(values: List[float], digits: int = 2) -> str:
    if not values:
        return '-'
    if len(values) == 1:
        return f'{values[0]:.{digits}f}'
    return f'{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}'


def table(entries: List[ZooEntry], runs: Dict[str, Dict[int, dict]],
          overheads: Dict[str, Optional[dict]]) -> List[str]:
    lines = ['| Method | Config | Seeds | Top-1 (%) | Gain | Train time (min) | s/iter | '
             'Overhead c/(a+b) | Extra params |',
             '|---|---|---|---|---|---|---|---|---|']
    for entry in entries:
        done = runs[entry.name]
        if not done:
            continue
        top1 = [r['final'] for r in done.values()]
        gain = '-'
        base = runs.get(entry.baseline) if entry.baseline else None
        if base:
            delta = statistics.mean(top1) - statistics.mean(r['final'] for r in base.values())
            gain = f'{delta:+.2f}'
        minutes = [r['train_s'] / 60 for r in done.values() if 'train_s' in r]
        per_iter = [r['s_per_iter'] for r in done.values() if 's_per_iter' in r]
        figures = overheads.get(entry.name)
        ratio = extra = '-'
        if figures:
            ratio = f'{figures["ratio"]:.2f}' if figures.get('ratio') else '- (the limit)'
            extra = f'{figures["parameters"].get("extra_trainable", 0):,}'
        lines.append(f'| {entry.method} | [{osp.basename(entry.config)}](../{entry.config}) | '
                     f'{len(done)} | {mean_std(top1)} | {gain} | {mean_std(minutes, 1)} | '
                     f'{mean_std(per_iter, 2)} | {ratio} | {extra} |')
    return lines


def plot(entries: List[ZooEntry], runs: Dict[str, Dict[int, dict]], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 4.8))
    # One colour and marker per method: more methods than a 10-colour cycle has.
    colours = plt.get_cmap('tab20').colors
    markers = 'osD^vP*Xh<>p'
    for index, entry in enumerate(entries):
        done = [r for r in runs[entry.name].values() if 'train_s' in r]
        if not done:
            continue
        xs = [r['train_s'] / 60 for r in done]
        ys = [r['final'] for r in done]
        # tab20's ten dark hues first, then their light shades, with another marker.
        colour = colours[(2 * index) % 20 + (index // 10) % 2]
        marker = markers[index % len(markers)]
        ax.scatter(xs, ys, alpha=0.35, s=18, color=colour, marker=marker)
        ax.errorbar(statistics.mean(xs), statistics.mean(ys),
                    xerr=statistics.stdev(xs) if len(xs) > 1 else None,
                    yerr=statistics.stdev(ys) if len(ys) > 1 else None, fmt=marker, ms=7,
                    capsize=3, color=colour, label=entry.method)
    ax.set_xlabel('training time (min, 2 shared CPU cores)')
    ax.set_ylabel('student top-1 (%)')
    ax.set_title('Fashion-MNIST zoo: accuracy vs training time (mean ± std over seeds)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='center left', bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches='tight')
    plt.close(fig)


def page(entries: List[ZooEntry], runs, overheads, missing: List[str], png: str) -> str:
    lines = [
        '# Model zoo: Fashion-MNIST',
        '',
        'Written by `python tools/benchmark/model_zoo.py` from the runs in `work_dirs/zoo/` '
        '(its log: [model_zoo.log](model_zoo.log)).',
        '',
        'Setting: 15,000 training images, all 10,000 test images, 4 epochs of SGD with a cosine '
        'schedule (`configs/_base_/datasets/fashion_mnist_15k.py`, '
        '`configs/_base_/schedules/sgd_cosine_4e.py`); ResNet-8 students, ResNet-56 teacher '
        '(89.01 top-1 alone), seeds 0, 1, 2.',
        '',
        '* **Top-1**: the student after the last epoch, mean ± std over seeds. **Gain**: over '
        'ResNet-8 trained alone.',
        '* **Train time**: mean iteration time of the run\'s log x iterations (validation and '
        'the teacher\'s one evaluation excluded). Runs share 2 CPU cores with other work, so '
        'times vary with the load; compare costs by the overhead ratio.',
        '* **Overhead c/(a+b)**: `tools/benchmark/distill_overhead.py <config>`: the '
        'distillation step (c) over the student\'s training step (a) plus the teacher\'s '
        'inference (b), timed interleaved on the same batches (1.00 = no cost beyond the limit).',
        '* **Extra params**: trainable parameters outside the student (connectors, learnable '
        'parts of losses); none of them is in the exported student.',
        '',
    ]
    lines += table(entries, runs, overheads)
    measured = [(e, overheads[e.name]) for e in entries if runs[e.name] and overheads.get(e.name)]
    if measured:
        lines += ['', 'Overhead measurements (`tools/benchmark/distill_overhead.py`):', '']
        for entry, figures in measured:
            s = figures.get('settings', {})
            legs = ', '.join(f'{leg["label"]} {leg["median"]:.3f} s' for leg in figures['legs'])
            lines.append(f'* {entry.method}: {legs}; {s.get("device")}, {s.get("threads")} '
                         f'thread(s), batch {s.get("batch_size")}, {s.get("iters")} timed rounds, '
                         f'{s.get("precision")}.')
    lines += ['', f'![accuracy vs training time]({osp.basename(png)})', '']
    if missing:
        lines += ['Not measured yet (run these, or `python tools/benchmark/model_zoo.py '
                  '--submit`):', '', '```']
        lines += missing
        lines += ['```', '']
    return '\n'.join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='docs/model_zoo.md', help='the page to write')
    parser.add_argument('--only', nargs='+', help='entry names to include (default: all)')
    parser.add_argument('--submit', action='store_true',
                        help=f'hand missing runs to the measurement queue ({QUEUE})')
    parser.add_argument('--overhead', action='store_true',
                        help='measure the overhead of entries without cached figures')
    parser.add_argument('--iters', type=int, default=20, help='timed rounds of --overhead')
    args = parser.parse_args(argv)
    os.chdir(REPO)
    stem = osp.splitext(args.out)[0]
    os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
    log.setLevel(logging.INFO)
    for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(stem + '.log', 'w')):
        handler.setFormatter(logging.Formatter('%(asctime)s %(message)s', '%Y-%m-%d %H:%M:%S'))
        log.addHandler(handler)
    log.info('model zoo: %s', ' '.join(sys.argv))
    entries = [e for e in ZOO if not args.only or e.name in args.only]
    runs, overheads, missing = {}, {}, []
    queued = queued_names()
    for entry in entries:
        if not osp.isfile(entry.config):
            log.info('%s: config %s does not exist; skipped', entry.name, entry.config)
            runs[entry.name] = {}
            continue
        runs[entry.name] = finished_runs(entry)
        for seed, run in sorted(runs[entry.name].items()):
            log.info('%s seed %d: reused %s: %s %.2f, %.0f s training (%.3f s/iter), %.0f s '
                     'wall', entry.name, seed, run_dir(entry, seed), entry.metric,
                     run['final'], run.get('train_s', float('nan')),
                     run.get('s_per_iter', float('nan')), run.get('wall_s', float('nan')))
        for seed in SEEDS:
            if seed in runs[entry.name]:
                continue
            command = train_command(entry, seed)
            name = f'{entry.name}_seed{seed}'
            done_file = osp.join(osp.dirname(QUEUE), 'done', name)
            if name in queued and osp.isfile(done_file):
                with open(done_file) as f:
                    code = f.read().strip()
                queue_log = osp.join(osp.dirname(QUEUE), 'logs', name + '.log')
                log.info('%s: left the queue with exit code %s (log: %s) but its run is not '
                         'complete', name, code, queue_log)
                missing.append(f'{command}  # failed in the queue (exit code {code})')
            elif name in queued:
                log.info('%s: in the measurement queue (not finished yet)', name)
                missing.append(f'{command}  # queued')
            elif args.submit:
                subprocess.run([QUEUE, name, command], check=True)
                log.info('submitted %s: %s', name, command)
                missing.append(f'{command}  # queued')
            else:
                log.info('missing: %s', command)
                missing.append(command)
        overheads[entry.name] = overhead_of(entry, args.overhead, args.iters)
        if overheads[entry.name]:
            figures = overheads[entry.name]
            log.info('%s: overhead ratio %s, extra trainable parameters %s', entry.name,
                     figures.get('ratio'), figures['parameters'].get('extra_trainable'))
    png = stem + '.png'
    plot(entries, runs, png)
    with open(args.out, 'w') as f:
        f.write(page(entries, runs, overheads, missing, png))
    log.info('wrote %s and %s', args.out, png)
    for line in table(entries, runs, overheads):
        log.info('%s', line)


if __name__ == '__main__':
    main()
