"""Visual concepts of trained checkpoints (Cheng et al., CVPR 2020, hypothesis 1 only).

For runs trained without ``KnowledgeQuantificationHook``: measures the final network of each
checkpoint on the hook's probe set, with the hook's default settings
(:class:`mmkd.analysis.ProbeSettings`), and prints N_fg, N_bg, lambda and H_fg - H_bg, mean ±
std over the seeds of each run name (the work dir's name without ``_seedN``). The config is the
one the run saved in its work dir. The nets are those :func:`mmkd.distillers.nets_of` lists:
the student (a plain model is its own student; a cohort's members are each measured, as
``<run>/<member>``), and each teacher once (the first checkpoint that has it, by its log
prefix: ``teacher``, or ``teacher/<name>`` for each of several). D_mean, D_std and rho need
the per-epoch record of the hook and are not computed here.

Example:
    python tools/analysis/quantify_checkpoints.py work_dirs/zoo/resnet8_seed*/epoch_4.pth \
        work_dirs/zoo/kd_resnet56_resnet8_seed*/epoch_4.pth
"""
import argparse
import glob
import os.path as osp
import re
import sys
from collections import OrderedDict
from typing import Dict, List

import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from torch import nn

import mmkd  # noqa: F401
from mmkd.analysis import ProbeSettings, build_probe_set, measure_entropy, summarize_knowledge
from mmkd.analysis.runs import mean_std
from mmkd.distillers import MEMBER, STUDENT, TEACHER, Net, build_model_from_config, nets_of
from mmkd.registry import DATASETS
from mmkd.utils import register_all_modules

KEYS = ['N_fg', 'N_bg', 'lambda', 'H_fg-H_bg']


def run_config(checkpoint: str) -> Config:
    """The config a run dumped next to its checkpoints."""
    found = sorted(glob.glob(osp.join(osp.dirname(checkpoint), '*.py')))
    if not found:
        raise FileNotFoundError(f'no config (*.py) next to {checkpoint}; the work dir of a '
                                f'tools/train.py run has one.')
    return Config.fromfile(found[0])


def measured_nets(model: nn.Module) -> List[Net]:
    """The nets whose knowledge a checkpoint is measured for: its student, or a
    cohort's members."""
    return nets_of(model, STUDENT) or nets_of(model, MEMBER)


def knowledge(net: Net, layer: str, inputs: torch.Tensor, foreground: torch.Tensor,
              settings: ProbeSettings) -> Dict[str, float]:
    """``net``'s summary (hypothesis 1) on the probe set."""
    entropy = measure_entropy(net.module, layer, inputs, net.name, **settings.sigma_kwargs)
    return summarize_knowledge([entropy], foreground, None, settings.concept_threshold)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoints', nargs='+')
    parser.add_argument('--layer', default='backbone.layer3')
    args = parser.parse_args()
    register_all_modules()
    settings = ProbeSettings()
    groups, teachers, probe = OrderedDict(), OrderedDict(), None
    for checkpoint in args.checkpoints:
        cfg = run_config(checkpoint)
        model = build_model_from_config(cfg)  # with the run's data preprocessor, as trained
        load_checkpoint(model, checkpoint, map_location='cpu', strict=False, logger='silent')
        if probe is None:
            dataset = DATASETS.build(cfg.val_dataloader.dataset)
            probe = build_probe_set(dataset, model.data_preprocessor, settings.num_images,
                                    settings.probe_seed, settings.grid,
                                    settings.foreground_threshold)
        inputs, foreground = probe[0], probe[1]
        run = re.sub(r'_seed\d+$', '', osp.basename(osp.dirname(osp.abspath(checkpoint))))
        nets = measured_nets(model)
        for net in nets:
            summary = knowledge(net, args.layer, inputs, foreground, settings)
            name = run if len(nets) == 1 else f'{run}/{net.name}'
            groups.setdefault(name, []).append(summary)
            shown = checkpoint if len(nets) == 1 else f'{checkpoint} ({net.name})'
            print(f'{shown}: ' + '  '.join(f'{k} {summary[k]:.3f}' for k in KEYS),
                  file=sys.stderr)
        for teacher in nets_of(model, TEACHER):
            if teacher.log_prefix not in teachers:
                teachers[teacher.log_prefix] = knowledge(teacher, args.layer, inputs,
                                                         foreground, settings)
    print('| run | checkpoints | N_fg ↑ | N_bg ↓ | λ ↑ | H_fg−H_bg |')
    print('|---|---|---|---|---|---|')
    for prefix, summary in teachers.items():
        print(f'| {prefix} | 1 | ' + ' | '.join(f'{summary[k]:.3f}' for k in KEYS) + ' |')
    for name, summaries in groups.items():
        print(f'| {name} | {len(summaries)} | ' +
              ' | '.join(mean_std([s[k] for s in summaries], 3) for k in KEYS) + ' |')


if __name__ == '__main__':
    main()
