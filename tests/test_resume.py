"""An interrupted run resumes to the same weights as an uninterrupted one."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmkd.registry import HOOKS

from conftest import runner_cfg, tiny_classifier


class SimulatedKill(RuntimeError):
    pass


@HOOKS.register_module(force=True)
class KillAtIterHook(Hook):
    """Raises mid-epoch, as a killed job would stop."""

    def __init__(self, at_iter: int):
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at_iter:
            raise SimulatedKill(f'killed at iteration {self.at_iter}')


def train(cfg: dict) -> Runner:
    runner = Runner.from_cfg(Config(cfg))
    runner.train()
    return runner


def test_resume_after_a_kill_mid_epoch_gives_the_same_weights(tmp_path, fashion_mnist_root):
    # 256 samples / batch 32 = 8 iterations an epoch, 3 epochs.
    full = train(runner_cfg(str(tmp_path / 'full'), fashion_mnist_root, tiny_classifier(),
                            epochs=3))
    cut_cfg = runner_cfg(str(tmp_path / 'cut'), fashion_mnist_root, tiny_classifier(), epochs=3)
    cut_cfg['custom_hooks'] = [dict(type='KillAtIterHook', at_iter=20)]  # in epoch 3
    with pytest.raises(SimulatedKill):
        train(cut_cfg)
    assert osp.isfile(tmp_path / 'cut' / 'epoch_2.pth')
    assert not osp.isfile(tmp_path / 'cut' / 'epoch_3.pth')

    resume_cfg = runner_cfg(str(tmp_path / 'cut'), fashion_mnist_root, tiny_classifier(),
                            epochs=3)
    resume_cfg['resume'] = True  # latest checkpoint of the work dir
    resumed = train(resume_cfg)
    assert (resumed.epoch, resumed.iter) == (full.epoch, full.iter) == (3, 24)
    full_state, resumed_state = full.model.state_dict(), resumed.model.state_dict()
    assert full_state.keys() == resumed_state.keys()
    for key, value in full_state.items():
        assert torch.equal(value, resumed_state[key]), key
    # Optimizer momentum and scheduler continued, not restarted.
    lr = resumed.optim_wrapper.get_lr()['lr'][0]
    assert lr == full.optim_wrapper.get_lr()['lr'][0]
