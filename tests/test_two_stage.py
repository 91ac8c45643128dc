"""Two-stage training (StagedTrainLoop) in real runners, and the task-loss switch."""
import copy
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

from mmkd.distillers import TASK
from mmkd.engine import StageConfigError, StagedTrainLoop
from mmkd.registry import MODELS

from conftest import kd_model, runner_cfg

# Stage 1 trains the student up to its hint layer (layer2) and the regressor.
HINT_PART = ['student.backbone.stem', 'student.backbone.layer1', 'student.backbone.layer2',
             'connectors']
STAGE1_LR, STAGE2_LR = 0.02, 0.05  # runner_cfg's top-level SGD has lr 0.05


def hint_model(teacher: dict) -> dict:
    return kd_model(
        teacher,
        recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc'),
                       feat=dict(type='ModuleOutputs', source='backbone.layer2')),
        connectors=dict(feat_s=dict(type='ConvBNConnector', input='student.feat',
                                    like='teacher.feat', kernel_size=3)),
        losses=dict(loss_hint=dict(type='MSELoss', student='feat_s', teacher='feat'),
                    loss_kd=dict(type='KDLoss', student='logits', teacher='logits', tau=4,
                                 loss_weight=0.9)))


def staged_cfg(work_dir: str, data_root: str, teacher: dict, epochs=(1, 2)) -> dict:
    # 128 images, batch 32: 4 iterations an epoch.
    cfg = runner_cfg(work_dir, data_root, hint_model(teacher), epochs=sum(epochs),
                     train_samples=128, val_samples=64)
    cfg['train_cfg'] = dict(type='StagedTrainLoop', val_interval=1, stages=[
        dict(name='hint', epochs=epochs[0], trainable=HINT_PART, losses=['loss_hint'],
             task_loss=0,
             optim_wrapper=dict(optimizer=dict(type='SGD', lr=STAGE1_LR, momentum=0.9,
                                               weight_decay=5e-4)),
             param_scheduler=[dict(type='CosineAnnealingLR', by_epoch=True, T_max=epochs[0])]),
        dict(name='kd', epochs=epochs[1], losses=['loss_kd']),  # the top-level optimizer
    ])
    cfg['param_scheduler'] = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=epochs[1])]
    cfg['log_processor'] = dict(by_epoch=True, window_size=1)  # log each value, not a mean
    cfg['default_hooks']['checkpoint'] = dict(type='CheckpointHook', interval=1)
    return cfg


class StageProbe(Hook):
    """Notes what each epoch trains with (a real hook in the real runner)."""

    priority = 'LOWEST'

    def __init__(self):
        self.start_state = None
        self.epochs = []

    def before_train(self, runner) -> None:
        self.start_state = {k: v.clone() for k, v in runner.model.state_dict().items()}

    def before_train_epoch(self, runner) -> None:
        ids = {id(p) for g in runner.optim_wrapper.optimizer.param_groups for p in g['params']}
        self.epochs.append(dict(
            epoch=runner.epoch, stage=runner.train_loop.stage_index,
            in_optimizer={n for n, p in runner.model.named_parameters() if id(p) in ids},
            lr=runner.optim_wrapper.get_lr()['lr'][0],
            task_loss=runner.model.loss_scales.task,
            scales={k: v for k, v in runner.model.loss_scales.as_dict().items() if k != TASK}))


def under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + '.') for p in prefixes)


def train(cfg: dict, probe: Hook = None) -> Runner:
    runner = Runner.from_cfg(Config(cfg))
    if probe is not None:
        runner.register_hook(probe)
    runner.train()
    return runner


def scalars(work_dir: str) -> list:
    lines = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            lines += [json.loads(line) for line in f]
    return lines


def load(path: str) -> dict:
    return torch.load(path, map_location='cpu', weights_only=False)


@pytest.fixture(scope='module')
def full_run(tmp_path_factory, fashion_mnist_root, tiny_teacher):
    """1 epoch of hints, then 2 epochs of KD, uninterrupted."""
    work_dir = str(tmp_path_factory.mktemp('two_stage'))
    probe = StageProbe()
    runner = train(staged_cfg(work_dir, fashion_mnist_root, tiny_teacher), probe)
    return dict(work_dir=work_dir, probe=probe, runner=runner)


def test_stage_one_trains_only_its_part_and_stage_two_trains_all(full_run):
    work_dir, probe = full_run['work_dir'], full_run['probe']
    start = probe.start_state
    after_1 = load(osp.join(work_dir, 'epoch_1.pth'))
    after_3 = load(osp.join(work_dir, 'epoch_3.pth'))
    assert after_1['meta']['train_stage'] == 0 and after_3['meta']['train_stage'] == 1

    # Stage 1: outside the hint part nothing moved - weights, BN statistics, counters.
    outside = [k for k in start if not under(k, HINT_PART)]
    inside = [k for k in start
              if under(k, HINT_PART) and k.endswith(('conv.weight', 'conv1.weight'))]
    assert any(k.startswith('student.backbone.layer3.') for k in outside)
    assert any('running_mean' in k for k in outside) and 'student.head.fc.weight' in outside
    for key in outside:
        assert torch.equal(start[key], after_1['state_dict'][key]), key
    assert inside and all(not torch.equal(start[k], after_1['state_dict'][k]) for k in inside)

    # Stage 2 trains the whole student (and keeps the connectors in the optimizer).
    student = [k for k, v in after_3['state_dict'].items()
               if k.startswith('student.') and v.is_floating_point()]
    for key in student:
        assert not torch.equal(after_1['state_dict'][key], after_3['state_dict'][key]), key

    model = full_run['runner'].model
    params = {n for n, _ in model.named_parameters()}
    hint_params = {n for n in params if under(n, HINT_PART)}
    first, second, third = probe.epochs
    assert (first['stage'], second['stage'], third['stage']) == (0, 1, 1)
    assert first['in_optimizer'] == hint_params
    assert second['in_optimizer'] == third['in_optimizer'] == params
    assert first['lr'] == pytest.approx(STAGE1_LR) and second['lr'] == pytest.approx(STAGE2_LR)
    assert third['lr'] < STAGE2_LR  # stage 2's own cosine, counted from its first epoch
    assert (first['task_loss'], first['scales']) == (0.0, dict(loss_hint=1.0, loss_kd=0.0))
    assert (second['task_loss'], second['scales']) == (1.0, dict(loss_hint=0.0, loss_kd=1.0))
    assert all(p.requires_grad for p in model.parameters())  # stage 2 unfroze everything

    # The logs show which losses were on: the hint alone, then CE and KD.
    lines = [line for line in scalars(work_dir) if 'loss_hint' in line]
    stage1 = [line for line in lines if line['epoch'] == 1]
    stage2 = [line for line in lines if line['epoch'] > 1]
    assert stage1 and stage2
    assert all(line['loss_hint'] > 0 and line['loss_kd'] == 0 for line in stage1)
    assert all(line['loss_hint'] == 0 and line['loss_kd'] > 0 for line in stage2)


def test_resume_in_stage_two_resumes_stage_two(tmp_path, full_run, fashion_mnist_root,
                                                tiny_teacher):
    cfg = staged_cfg(str(tmp_path), fashion_mnist_root, tiny_teacher)
    cfg.update(resume=True, load_from=osp.join(full_run['work_dir'], 'epoch_2.pth'))
    probe = StageProbe()
    resumed = train(cfg, probe)
    # It went on in stage 2, with all parameters and stage 2's learning rate.
    assert [e['stage'] for e in probe.epochs] == [1]
    assert probe.epochs[0]['in_optimizer'] == {n for n, _ in resumed.model.named_parameters()}
    assert probe.epochs[0]['lr'] == pytest.approx(full_run['probe'].epochs[2]['lr'])
    # Momentum and schedule were restored: the same weights as the uninterrupted run.
    final = load(osp.join(full_run['work_dir'], 'epoch_3.pth'))['state_dict']
    state = resumed.model.state_dict()
    assert state.keys() == final.keys()
    for key, value in final.items():
        assert torch.equal(value, state[key]), key


def test_resume_from_the_end_of_stage_one_starts_stage_two(tmp_path, full_run,
                                                           fashion_mnist_root, tiny_teacher):
    cfg = staged_cfg(str(tmp_path), fashion_mnist_root, tiny_teacher)
    cfg.update(resume=True, load_from=osp.join(full_run['work_dir'], 'epoch_1.pth'))
    cfg['train_cfg']['stages'][1]['epochs'] = 1  # stop after one epoch of stage 2
    probe = StageProbe()
    train(cfg, probe)
    assert [e['stage'] for e in probe.epochs] == [1]
    assert probe.epochs[0]['lr'] == pytest.approx(STAGE2_LR)
    final = load(osp.join(full_run['work_dir'], 'epoch_2.pth'))['state_dict']
    state = load(osp.join(str(tmp_path), 'epoch_2.pth'))['state_dict']
    for key, value in final.items():
        assert torch.equal(value, state[key]), key


def test_bad_stages_are_named(tmp_path, fashion_mnist_root, tiny_teacher):
    cfg = staged_cfg(str(tmp_path), fashion_mnist_root, tiny_teacher)
    runner = Runner.from_cfg(Config(cfg))
    loader = Runner.build_dataloader(cfg['train_dataloader'])
    good = cfg['train_cfg']['stages']
    cases = [
        (dict(trainable=['student.backbone.layer22']), r"'student.backbone.layer22'.*layer2"),
        (dict(losses=['loss_hnt']), r"no distillation loss \['loss_hnt'\].*loss_hint"),
        (dict(epochs=0), 'positive int'),
        (dict(lr=0.1), r"unknown key\(s\) \['lr'\]"),
    ]
    for change, message in cases:
        stages = [dict(good[0], **change), good[1]]
        with pytest.raises(StageConfigError, match=message):
            StagedTrainLoop(runner, loader, stages)
    with pytest.raises(StageConfigError, match='stages last 3 epochs.*_delete_=True'):
        StagedTrainLoop(runner, loader, good, max_epochs=4)
    loop = StagedTrainLoop(runner, loader, good)
    assert (loop.max_epochs, [loop.stage_at(e) for e in range(3)]) == (3, [0, 1, 1])


def test_task_loss_scale_and_switched_off_losses(tiny_teacher):
    model = MODELS.build(hint_model(tiny_teacher)).eval()
    x = torch.randn(4, 1, 28, 28)
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    base = model(x, copy.deepcopy(samples), mode='loss')
    assert base['loss_task'].requires_grad and base['loss_task'] > 0

    model.loss_scales.set('test', {TASK: 0.5})
    half = model(x, copy.deepcopy(samples), mode='loss')
    # Each call repeats the forward passes: float32 round-off, not a tolerance on the logic.
    assert half['loss_task'].item() == pytest.approx(0.5 * base['loss_task'].item(), rel=1e-5)
    assert half['loss_kd'].item() == pytest.approx(base['loss_kd'].item(), rel=1e-4)

    # Task loss off: logged as 0, no gradient through the student's head.
    model.loss_scales.set('test', {TASK: 0, 'loss_kd': 0})
    off = model(x, copy.deepcopy(samples), mode='loss')
    assert off['loss_task'].item() == 0 and not off['loss_task'].requires_grad
    assert off['loss_kd'].item() == 0 and off['loss_hint'] > 0
    off['loss_hint'].backward()
    assert model.student.head.fc.weight.grad is None
    assert model.student.backbone.layer2[0].conv1.weight.grad is not None

    # Every distillation loss off: the teacher does not run at all.
    calls = []
    model.teacher.backbone.register_forward_hook(lambda *args: calls.append(1))
    model.loss_scales.set('test', {'loss_kd': 0, 'loss_hint': 0})
    plain = model(x, copy.deepcopy(samples), mode='loss')
    assert calls == [] and plain['loss_hint'].item() == 0
    assert plain['loss_task'].item() == pytest.approx(base['loss_task'].item(), rel=1e-5)
    model.loss_scales.clear('test')
    model(x, copy.deepcopy(samples), mode='loss')
    assert calls == [1]


class ScaleProbe(Hook):
    """Notes the factor applied to each distillation loss in every iteration."""

    priority = 'LOWEST'  # after the schedule hook has set this iteration's factor

    def __init__(self):
        self.seen = []

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        scales = runner.model.loss_scales
        self.seen.append((runner.epoch, batch_idx, scales['loss_hint'], scales['loss_kd'],
                          scales.task))


def test_stages_and_a_loss_schedule_compose(tmp_path, fashion_mnist_root, tiny_teacher):
    """The stage switches losses on and off, the hook warms loss_kd up: the applied
    factor is their product, so the warm-up never revives a loss a stage turned off."""
    cfg = staged_cfg(str(tmp_path), fashion_mnist_root, tiny_teacher)
    cfg['custom_hooks'] = [dict(type='DistillLossScheduleHook', warmup=3, losses=['loss_kd'])]
    probe = ScaleProbe()
    train(cfg, probe)
    assert len(probe.seen) == 12  # 3 epochs of 4 iterations
    for epoch, batch, hint, kd, task in probe.seen:
        warmup = min(1.0, (epoch + (batch + 1) / 4) / 3)
        if epoch == 0:  # stage 'hint': loss_kd and the task loss off whatever the warm-up
            assert (hint, kd, task) == (1.0, 0.0, 0.0)
        else:  # stage 'kd': the hint off, loss_kd at the warm-up factor
            assert (hint, task) == (0.0, 1.0)
            assert kd == pytest.approx(warmup)
    lines = [line for line in scalars(str(tmp_path)) if 'loss_kd' in line]
    assert all(line['loss_kd'] == 0 for line in lines if line['epoch'] == 1)
    assert all(line['loss_kd'] > 0 for line in lines if line['epoch'] > 1)
    assert sorted({round(line['distill_scale'], 6) for line in lines if line['epoch'] == 1}) == \
        [round(0.25 * (b + 1) / 3, 6) for b in range(4)]
