"""The training command of ``tools/train.py`` (and ``tools/distill.py``), as a library.

Example:
    python tools/train.py configs/kd/kd_resnet56_resnet20_fashionmnist.py
    python tools/train.py <config> --resume            # from the last checkpoint
    python tools/train.py <config> --amp --cfg-options train_cfg.max_epochs=2
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from mmkd.distillers import load_config
from mmkd.distillers.recipe import add_recipe_hooks
from mmkd.engine import apply_teacher_cache, fit_schedule_to_epochs, mixed_precision_cfg
from mmkd.engine.work_dir import (
    check_requested_checkpoint,
    clear_earlier_run,
    earlier_run,
    resume_checkpoint,
)
from mmkd.registry import RUNNERS
from mmkd.utils import finish_distributed, register_all_modules, setup_cpu_distributed


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description='Train a model with mmkd')
    parser.add_argument('config', help='config file (a path or mmkd::/mmpretrain::... )')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest one in the '
                        'work dir that loads when no path is given')
    parser.add_argument('--overwrite', action='store_true',
                        help="delete an earlier run's checkpoints in the work dir and train "
                        'afresh (without it, such a work dir is refused)')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size')
    parser.add_argument('--no-validate', action='store_true',
                        help='skip validation during training')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_cfg.max_epochs=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args) -> Config:
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        # AmpOptimWrapper on GPUs; bf16 autocast on CPU, where MMEngine's wrapper cannot start.
        cfg.optim_wrapper = mixed_precision_cfg(cfg.optim_wrapper)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.auto_scale_lr:
        cfg.setdefault('auto_scale_lr', {})['enable'] = True
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    return cfg


def prepare_work_dir(cfg: Config, args) -> List[str]:
    """Choose the checkpoint to resume, and never overwrite an earlier run silently."""
    work_dir = cfg.work_dir
    if args.resume == 'auto':
        cfg.load_from, notes = resume_checkpoint(work_dir)
        return notes
    if args.resume is not None:
        check_requested_checkpoint(args.resume)
        return []
    earlier = earlier_run(work_dir)
    if not earlier:
        return []
    if not args.overwrite:
        names = ', '.join(osp.basename(p) for p in earlier[:4])
        raise SystemExit(
            f'{work_dir} holds an earlier run ({names}{", ..." if len(earlier) > 4 else ""}): '
            'pass --resume to continue it, --work-dir <another dir> to train elsewhere, or '
            '--overwrite to delete its checkpoints and train afresh.')
    return [f'--overwrite: deleted {len(clear_earlier_run(work_dir))} file(s) of an earlier '
            f'run in {work_dir}.']


def main(argv: Optional[List[str]] = None):
    args = parse_args(argv)
    register_all_modules(init_default_scope=False)
    cfg = load_config(args.config)
    planned_epochs = (cfg.get('train_cfg') or {}).get('max_epochs')
    cfg = merge_args(cfg, args)
    # The schedule follows an epoch count changed by --cfg-options.
    notes = (fit_schedule_to_epochs(cfg, planned_epochs) + add_recipe_hooks(cfg)
             + apply_teacher_cache(cfg) + prepare_work_dir(cfg, args))
    setup_cpu_distributed(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    for note in notes:
        runner.logger.warning(note)
    runner.train()
    finish_distributed()

