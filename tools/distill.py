"""Distil your own OpenMMLab config in one command.

Composes a distillation config from your student config (its data, schedule and
runtime kept), a teacher config with its trained weights, and a recipe (the
distillation part: records found in both nets, connectors, losses, hooks), dumps
it into the work dir, and trains it with tools/train.py. The dumped config is the
whole run: ``python tools/train.py <work_dir>/<name>.py`` trains it again.

Example:
    python tools/distill.py my_resnet18_config.py --teacher my_resnet50_config.py \\
        --teacher-checkpoint work_dirs/resnet50/epoch_100.pth --recipe dkd
    python tools/distill.py my_retinanet_r18.py \\
        --teacher mmdet::retinanet/retinanet_r50_fpn_1x_coco.py \\
        --teacher-checkpoint https://.../retinanet_r50.pth    # default recipe: fpn_mse
    python tools/distill.py --list-recipes
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import DictAction

import mmkd  # noqa: F401  (mmkd:: configs, safe checkpoint loading)
from mmkd.distillers.compose import compose_distillation, header
from mmkd.distillers.recipe import list_recipes, load_recipe
from mmkd.engine.training import main as train_main
from mmkd.utils import exit_after_distributed_run, register_all_modules


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(
        description='Distil a teacher into your own OpenMMLab config, in one command.')
    parser.add_argument('config', nargs='?', help='your student config (a path or scope::path)')
    parser.add_argument('--teacher', help="the teacher's config")
    parser.add_argument('--teacher-checkpoint',
                        help="the teacher's trained weights: a file or a URL (https://...)")
    parser.add_argument('--recipe', help='a recipe name (see --list-recipes) or file; default: '
                        'logit KD for classifiers, FPN features for detectors, CWD for '
                        'segmentors')
    parser.add_argument('--work-dir', help='where the composed config, logs and checkpoints go')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override entries of the composed config, e.g. '
                        'model.losses.loss_kd.tau=2 train_cfg.max_epochs=50')
    parser.add_argument('--no-teacher-eval', action='store_true',
                        help="do not evaluate the teacher before training")
    parser.add_argument('--dump-only', action='store_true',
                        help='write the composed config and stop')
    parser.add_argument('--list-recipes', action='store_true', help='list the recipes and stop')
    args, train_args = parser.parse_known_args(argv)
    if not args.list_recipes and not (args.config and args.teacher):
        parser.error('give your config and --teacher (and --teacher-checkpoint).')
    return args, train_args


def recipes_table() -> str:
    rows = []
    for name in list_recipes():
        recipe = load_recipe(name)
        rows.append(f'  {name:<10} {recipe.task or "":<15} {recipe.description}')
    return '\n'.join(rows)


def main(argv: Optional[List[str]] = None) -> str:
    """Compose, dump and (unless ``--dump-only``) train. Returns the dumped file.

    Arguments it does not know (``--amp``, ``--resume``, ``--overwrite``...)
    go to tools/train.py.
    """
    args, train_args = parse_args(argv)
    if args.list_recipes:
        print(recipes_table())
        return ''
    register_all_modules(init_default_scope=False)
    if args.teacher_checkpoint is None:
        print('tools/distill.py: no --teacher-checkpoint: the teacher is untrained (for '
              'trying the pipeline only).', file=sys.stderr)
    cfg, recipe, notes = compose_distillation(args.config, args.teacher, args.teacher_checkpoint,
                                      args.recipe, teacher_eval=not args.no_teacher_eval)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    name = osp.splitext(osp.basename(args.config.split('::')[-1]))[0]
    run_name = f'{osp.splitext(osp.basename(recipe))[0]}_{name}'
    work_dir = args.work_dir or cfg.get('work_dir') or osp.join('work_dirs', run_name)
    cfg.work_dir = work_dir
    os.makedirs(work_dir, exist_ok=True)
    dumped = osp.join(work_dir, f'{run_name}.py')
    text = header(args.config, args.teacher, args.teacher_checkpoint, recipe) + cfg.pretty_text
    with open(dumped, 'w') as f:
        f.write(text)
    for note in notes:
        print(f'tools/distill.py: {note}')
    print(f'tools/distill.py: composed config written to {dumped}')
    if args.dump_only:
        return dumped
    train_main([dumped, '--work-dir', work_dir] + train_args)
    return dumped


if __name__ == '__main__':
    main()
    exit_after_distributed_run()
