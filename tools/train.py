"""Train a model (a distiller or a plain OpenMMLab model) from a config.

Example:
    python tools/train.py configs/kd/kd_resnet56_resnet20_fashionmnist.py
    python tools/train.py <config> --resume            # from the last checkpoint
    python tools/train.py <config> --amp --cfg-options train_cfg.max_epochs=2
"""
import mmkd  # noqa: F401  (mmkd:: configs, safe checkpoint loading)
from mmkd.engine.training import main, merge_args, parse_args, prepare_work_dir
from mmkd.utils import exit_after_distributed_run

__all__ = ['main', 'merge_args', 'parse_args', 'prepare_work_dir']

if __name__ == '__main__':
    main()
    exit_after_distributed_run()
