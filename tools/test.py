"""Evaluate a checkpoint on the test set of a config (the student's metrics,
and the teacher's when the model is a distiller).

Example:
    python tools/test.py configs/kd/kd_resnet56_resnet20_fashionmnist.py \
        work_dirs/kd_resnet56_resnet20_fashionmnist/epoch_10.pth
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction
from mmengine.runner import Runner

import mmkd  # noqa: F401
from mmkd.distillers import load_config
from mmkd.utils import (
    exit_after_distributed_run,
    finish_distributed,
    register_all_modules,
    setup_cpu_distributed,
)


def parse_args():
    parser = argparse.ArgumentParser(description='Test a model with mmkd')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the test logs go')
    parser.add_argument('--out', help='dump the predictions to this pickle file')
    parser.add_argument('--no-teacher', action='store_true',
                        help="skip the teacher's evaluation")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    register_all_modules(init_default_scope=False)
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.no_teacher:
        cfg.custom_hooks = [h for h in cfg.get('custom_hooks', [])
                            if 'TeacherEvaluationHook' not in h.get('type', '')]
    if args.out:
        cfg.test_evaluator = [cfg.test_evaluator] if isinstance(cfg.test_evaluator, dict) \
            else list(cfg.test_evaluator)
        cfg.test_evaluator.append(dict(type='DumpResults', out_file_path=args.out))
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    runner.test()
    finish_distributed()


if __name__ == '__main__':
    main()
    exit_after_distributed_run()
