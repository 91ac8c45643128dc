"""FSPLoss against hand-computed values; the FitNets and FSP configs in real runners."""
import glob
import json
import os.path as osp
import uuid

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmkd.distillers import load_config
from mmkd.losses import FSPLoss, ShapeMismatchError, fsp_matrix

from conftest import REPO


def maps(*rows, h=1):
    """A (1, C, h, w) map from per-channel rows of numbers."""
    return torch.tensor([rows], dtype=torch.float32).view(1, len(rows), h, -1)


def test_fsp_matrix_by_hand():
    # Two channels [1, 2] and [0, 1] against one channel [3, 4], over h*w = 2 positions:
    # G = F1^T F2 / 2 = [[(1*3 + 2*4) / 2], [(0*3 + 1*4) / 2]] = [[5.5], [2]].
    first = maps([1., 2.], [0., 1.])
    second = maps([3., 4.])
    assert fsp_matrix(first, second).tolist() == [[[5.5], [2.0]]]
    # A 2x4 map is average-pooled to the 1x2 of the other one: blocks of 4 -> [3, 4].
    larger = torch.tensor([[2., 4., 3., 5.], [4., 2., 5., 3.]]).view(1, 1, 2, 4)
    assert fsp_matrix(first, larger).tolist() == [[[5.5], [2.0]]]
    assert fsp_matrix(larger, first).tolist() == [[[5.5, 2.0]]]  # G^T of the same maps


def test_fsp_loss_by_hand():
    a, b = maps([1., 2.], [0., 1.]), maps([3., 4.])
    student = [a, b]
    teacher = [a, maps([1., 0.])]  # G_t = [[(1*1 + 2*0) / 2], [0]] = [[0.5], [0]]
    # ||G_s - G_t||^2 = (5.5 - 0.5)^2 + (2 - 0)^2 = 29
    assert FSPLoss()(student, teacher).item() == pytest.approx(29.0)
    assert FSPLoss(reduction='mean')(student, teacher).item() == pytest.approx(14.5)
    assert FSPLoss(loss_weight=0.1)(student, teacher).item() == pytest.approx(2.9)
    # Averaged over samples: a second, identical pair of samples keeps 29.
    double = [torch.cat([f, f]) for f in student], [torch.cat([f, f]) for f in teacher]
    assert FSPLoss()(*double).item() == pytest.approx(29.0)
    # Three layers: pairs (0, 1) and (1, 2), each weighted. The second pair's matrices:
    # G_s = [[3 * 2 + 4 * 2] / 2] = [[7]], G_t = [[1 * 2 + 0 * 2] / 2] = [[1]] -> 36.
    third = maps([2., 2.])
    loss = FSPLoss(pair_weights=[1.0, 0.5])(student + [third], teacher + [third])
    assert loss.item() == pytest.approx(29.0 + 0.5 * 36.0)
    # Named pairs: only (0, 2). G_s = [[(2 + 4) / 2], [2 / 2]] = [[3], [1]] = G_t -> 0.
    assert FSPLoss(pairs=[(0, 2)])(student + [third], teacher + [third]).item() == 0


def test_fsp_loss_trains_the_student_only_and_names_mismatches():
    student = [torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 8, 4, 4)]
    teacher = [torch.randn(2, 4, 6, 6), torch.randn(2, 8, 3, 3)]  # other sizes: fine
    loss = FSPLoss()(student, teacher)
    loss.backward()
    assert loss > 0 and student[0].grad.abs().sum() > 0
    with pytest.raises(ShapeMismatchError, match=r'pair \(0, 1\).*\(2, 4, 16\).*\(2, 4, 8\)'):
        FSPLoss()([student[0], torch.randn(2, 16, 4, 4)], teacher)
    with pytest.raises(TypeError, match='list of features'):
        FSPLoss()(student[0], teacher[0])
    with pytest.raises(ValueError, match='2 pairs but 1 pair_weights'):
        FSPLoss(pair_weights=[1.0])(student + [student[1]], teacher + [teacher[1]])


class FirstEpochState(Hook):
    """Keeps the model's state when training starts (a real hook in the real runner)."""

    def before_train(self, runner) -> None:
        self.state = {k: v.clone() for k, v in runner.model.state_dict().items()}


def short_run(config: str, work_dir: str, data_root: str) -> dict:
    """The shipped config on 128 training images, one epoch per stage, with a random
    ResNet-8 teacher (a random ResNet-56's features explode; the wiring is what is tested)."""
    cfg = load_config(osp.join(REPO, 'configs', config))
    cfg.model.teacher = dict(cfg_path=osp.join(REPO, 'configs', 'models',
                                               'resnet8_fashionmnist.py'), checkpoint=None)
    for split, n in (('train', 128), ('val', 64), ('test', 64)):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=32, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=data_root, indices=n)
    for stage in cfg.train_cfg.stages:
        stage.epochs = 1
    cfg.param_scheduler = None  # the 4-epoch schedule does not fit one epoch
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.log_processor = dict(by_epoch=True, window_size=1)
    cfg.update(work_dir=work_dir, log_level='WARNING',
               experiment_name=f'test_{uuid.uuid4().hex[:12]}')
    hook = FirstEpochState()
    with pytest.warns(UserWarning, match='randomly initialised'):
        runner = Runner.from_cfg(cfg)
    runner.register_hook(hook)
    runner.train()
    lines = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            lines += [json.loads(line) for line in f]
    after_1 = torch.load(osp.join(work_dir, 'epoch_1.pth'), weights_only=False)['state_dict']
    return dict(runner=runner, start=hook.state, after_1=after_1, logs=lines)


def test_fitnets_config_hints_first_then_distils(tmp_path, fashion_mnist_root):
    run = short_run('fitnets/fitnets_resnet56_resnet8_fashionmnist.py', str(tmp_path),
                    fashion_mnist_root)
    model, start, after_1 = run['runner'].model, run['start'], run['after_1']
    conv = model.connectors['regressor'].conv
    assert conv.kernel_size == (3, 3) and (conv.in_channels, conv.out_channels) == (32, 32)
    # Stage 1 moved the guided part and the regressor, nothing above the guided layer.
    for key in ('student.backbone.layer2.0.conv1.weight', 'connectors.regressor.conv.weight'):
        assert not torch.equal(start[key], after_1[key]), key
    for key in start:
        if key.startswith(('student.backbone.layer3.', 'student.head.')):
            assert torch.equal(start[key], after_1[key]), key
    stage1 = [line for line in run['logs'] if 'loss_hint' in line and line['epoch'] == 1]
    stage2 = [line for line in run['logs'] if 'loss_hint' in line and line['epoch'] == 2]
    assert stage1 and all(line['loss_hint'] > 0 and line['loss_kd'] == 0 for line in stage1)
    assert stage2 and all(line['loss_hint'] == 0 and line['loss_kd'] > 0 for line in stage2)


def test_fsp_config_matches_flows_then_trains_on_labels(tmp_path, fashion_mnist_root):
    run = short_run('fsp/fsp_resnet56_resnet8_fashionmnist.py', str(tmp_path),
                    fashion_mnist_root)
    model, start, after_1 = run['runner'].model, run['start'], run['after_1']
    assert list(model.distill_losses) == ['loss_fsp']
    assert [ref.net for ref in model.loss_inputs['loss_fsp']['teacher']] == ['teacher'] * 4
    assert not torch.equal(start['student.backbone.layer3.0.conv1.weight'],
                           after_1['student.backbone.layer3.0.conv1.weight'])
    assert torch.equal(start['student.head.fc.weight'], after_1['student.head.fc.weight'])
    stage1 = [line for line in run['logs'] if 'loss_fsp' in line and line['epoch'] == 1]
    stage2 = [line for line in run['logs'] if 'loss_fsp' in line and line['epoch'] == 2]
    assert stage1 and all(line['loss_fsp'] > 0 for line in stage1)
    assert stage2 and all(line['loss_fsp'] == 0 and line['loss'] > 0 for line in stage2)
