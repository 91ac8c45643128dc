"""Visual concepts of trained checkpoints (Cheng et al., CVPR 2020, hypothesis 1 only).

For runs trained without ``KnowledgeQuantificationHook``: measures the final network of each
checkpoint on the hook's probe set, with the hook's default settings, and prints N_fg, N_bg,
lambda and H_fg - H_bg, mean ± std over the seeds of each run name (the work dir's name
without ``_seedN``). The config is the one the run saved in its work dir. For a distiller the
student is measured, and the teacher once. D_mean, D_std and rho need the per-epoch record of
the hook and are not computed here.

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

import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint

import mmkd  # noqa: F401
from mmkd.analysis import summarize_knowledge
from mmkd.engine.hooks.knowledge_quantification_hook import (KnowledgeQuantificationHook,
                                                             build_probe_set, measure_entropy)
from mmkd.registry import DATASETS, MODELS
from mmkd.utils import register_all_modules

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from quantify_knowledge import mean_std  # noqa: E402

KEYS = ['N_fg', 'N_bg', 'lambda', 'H_fg-H_bg']


def run_config(checkpoint: str) -> Config:
    """The config a run dumped next to its checkpoints."""
    found = sorted(glob.glob(osp.join(osp.dirname(checkpoint), '*.py')))
    if not found:
        raise FileNotFoundError(f'no config (*.py) next to {checkpoint}; the work dir of a '
                                f'tools/train.py run has one.')
    return Config.fromfile(found[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoints', nargs='+')
    parser.add_argument('--layer', default='backbone.layer3')
    args = parser.parse_args()
    register_all_modules()
    hook = KnowledgeQuantificationHook(layer=args.layer)
    groups, teacher, probe = OrderedDict(), None, None
    for checkpoint in args.checkpoints:
        cfg = run_config(checkpoint)
        model = MODELS.build(cfg.model)
        load_checkpoint(model, checkpoint, map_location='cpu', strict=False, logger='silent')
        if probe is None:
            dataset = DATASETS.build(cfg.val_dataloader.dataset)
            probe = build_probe_set(dataset, model.data_preprocessor, hook.num_images,
                                    hook.probe_seed, hook.grid, hook.foreground_threshold)
        inputs, foreground = probe[0], probe[1]
        net = getattr(model, 'student', model)
        entropy = measure_entropy(net, args.layer, inputs, **hook.sigma_kwargs)
        summary = summarize_knowledge([entropy], foreground, None, hook.concept_threshold)
        name = re.sub(r'_seed\d+$', '', osp.basename(osp.dirname(osp.abspath(checkpoint))))
        groups.setdefault(name, []).append(summary)
        if teacher is None and isinstance(getattr(model, 'teacher', None), torch.nn.Module):
            teacher = summarize_knowledge(
                [measure_entropy(model.teacher, args.layer, inputs, **hook.sigma_kwargs)],
                foreground, None, hook.concept_threshold)
        print(f'{checkpoint}: ' + '  '.join(f'{k} {summary[k]:.3f}' for k in KEYS),
              file=sys.stderr)
    print('| run | checkpoints | N_fg ↑ | N_bg ↓ | λ ↑ | H_fg−H_bg |')
    print('|---|---|---|---|---|---|')
    if teacher is not None:
        print('| teacher | 1 | ' + ' | '.join(f'{teacher[k]:.3f}' for k in KEYS) + ' |')
    for name, summaries in groups.items():
        print(f'| {name} | {len(summaries)} | ' +
              ' | '.join(mean_std([s[k] for s in summaries], 3) for k in KEYS) + ' |')


if __name__ == '__main__':
    main()
