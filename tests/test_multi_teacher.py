"""MultiTeacherKDLoss targets, list references, MultiTeacherDistiller in a real Runner."""
import glob
import json
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

from mmkd.distillers import TEACHER, DistillerConfigError, RecordRef, nets_of
from mmkd.losses import KDLoss, MultiTeacherKDLoss
from mmkd.registry import MODELS

from conftest import REPO, STUDENT_WIDTHS, TEACHER_WIDTHS, kd_model, runner_cfg, tiny_classifier

P1 = [0.5, 0.25, 0.25]
P2 = [0.25, 0.25, 0.5]


def logits_of(*probs) -> torch.Tensor:
    """Logits whose softmax (tau = 1) is each given distribution, one row each."""
    return torch.tensor([[math.log(p) for p in row] for row in probs])


@pytest.mark.parametrize('combine, weights, expected', [
    # mean of the probabilities: (0.5 + 0.25) / 2, 0.25, (0.25 + 0.5) / 2
    ('arithmetic', None, [0.375, 0.25, 0.375]),
    # 3:1 weights: 0.75 * P1 + 0.25 * P2
    ('arithmetic', [3, 1], [0.4375, 0.25, 0.3125]),
    # sqrt(P1 * P2) = (sqrt(1/8), 1/4, sqrt(1/8)), divided by its sum
    ('geometric', None, [math.sqrt(1 / 8) / (2 * math.sqrt(1 / 8) + 0.25),
                         0.25 / (2 * math.sqrt(1 / 8) + 0.25),
                         math.sqrt(1 / 8) / (2 * math.sqrt(1 / 8) + 0.25)]),
    # P1^(3/4) * P2^(1/4) = (2^-1.25, 2^-2, 2^-1.75), divided by its sum
    ('geometric', [3, 1], [2**-1.25 / (2**-1.25 + 2**-2 + 2**-1.75),
                           2**-2 / (2**-1.25 + 2**-2 + 2**-1.75),
                           2**-1.75 / (2**-1.25 + 2**-2 + 2**-1.75)]),
])
def test_two_teachers_targets_on_known_logits(combine, weights, expected):
    loss = MultiTeacherKDLoss(combine=combine, weights=weights, tau=1)
    # Constant shifts of a teacher's logits do not change its probabilities.
    target = loss.target([logits_of(P1) + 3.0, logits_of(P2) - 1.0])
    assert target.shape == (1, 3)
    assert target[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_loss_value_is_tau_squared_kl_towards_the_combined_target():
    tau = 2.0
    teachers = [logits_of(P1) * tau, logits_of(P2) * tau]  # softmax(t / tau) = P1, P2
    student = logits_of([0.2, 0.3, 0.5]) * tau
    q = [0.375, 0.25, 0.375]
    kl = sum(qi * math.log(qi / si) for qi, si in zip(q, [0.2, 0.3, 0.5]))
    value = MultiTeacherKDLoss(tau=tau, loss_weight=0.5)(student, teachers)
    assert value.item() == pytest.approx(0.5 * tau**2 * kl, rel=1e-5)


@pytest.mark.parametrize('combine', ['arithmetic', 'geometric'])
def test_one_teacher_is_plain_kd(combine):
    s, t = torch.randn(6, 10), torch.randn(6, 10)
    mt = MultiTeacherKDLoss(combine=combine, tau=3)
    assert mt(s, [t]).item() == pytest.approx(KDLoss(tau=3)(s, t).item(), rel=1e-5)
    # Two equal teachers are the same teacher under either mean.
    assert mt(s, [t, t.clone()]).item() == pytest.approx(KDLoss(tau=3)(s, t).item(), rel=1e-5)


def test_bad_loss_arguments_are_named():
    with pytest.raises(ValueError, match="combine must be one of"):
        MultiTeacherKDLoss(combine='median')
    with pytest.raises(ValueError, match='2 weights for 3 teacher'):
        MultiTeacherKDLoss(weights=[1, 1])(torch.randn(2, 4), [torch.randn(2, 4)] * 3)
    with pytest.raises(ValueError, match='positive sum'):
        MultiTeacherKDLoss(weights=[0, 0])


# ---------------------------------------------------------------- distiller
def saved_teacher(directory, depth: int, widths) -> dict:
    """An initialised (untrained) tiny classifier written as a checkpoint file."""
    model = tiny_classifier(depth=depth, widths=widths)
    net = MODELS.build(model)
    net.init_weights()
    path = str(directory / f'resnet{depth}_{"_".join(map(str, widths))}.pth')
    torch.save(dict(state_dict=net.state_dict(), meta=dict()), path)
    return dict(model=model, checkpoint=path, state=net.state_dict())


@pytest.fixture(scope='module')
def teachers(tmp_path_factory) -> tuple:
    """Two teachers of different widths saved on disk: t1 (16 channels), t2 (12)."""
    directory = tmp_path_factory.mktemp('teachers')
    return (saved_teacher(directory, 14, TEACHER_WIDTHS),
            saved_teacher(directory, 8, (8, 8, 12, 12)))


def mt_model(t1: dict, t2: dict, **overrides) -> dict:
    """Tiny student, teachers t1 and t2: combined KD + a hint that names t1."""
    model = dict(
        type='MultiTeacherDistiller',
        student=tiny_classifier(depth=8, widths=STUDENT_WIDTHS),
        teachers=dict(t1=dict(t1['model'], checkpoint=t1['checkpoint']),
                      t2=dict(t2['model'], checkpoint=t2['checkpoint'])),
        recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
        student_recorders=dict(feat=dict(type='ModuleOutputs', source='backbone.layer2')),
        teacher_recorders=dict(t1=dict(feat=dict(type='ModuleOutputs',
                                                 source='backbone.layer2'))),
        connectors=dict(feat_s=dict(type='ConvBNConnector', input='student.feat',
                                    like='t1.feat')),
        losses=dict(
            loss_kd=dict(type='MultiTeacherKDLoss', student='student.logits',
                         teacher=['t1.logits', 't2.logits'], combine='geometric',
                         weights=[2, 1], tau=4, loss_weight=0.9),
            loss_hint=dict(type='MSELoss', student='feat_s', teacher='t1.feat')),
        dry_run_shape=(1, 28, 28))
    model.update(overrides)
    return model


def test_multi_teacher_run_trains_the_student_and_leaves_teachers_unchanged(
        tmp_path, fashion_mnist_root, teachers):
    cfg = runner_cfg(str(tmp_path), fashion_mnist_root, mt_model(*teachers), epochs=1,
                     train_samples=96, val_samples=32)
    runner = Runner.from_cfg(Config(cfg))
    distiller = runner.model
    nets = distiller.teachers
    assert set(nets) == {'t1', 't2'}
    for (name, net), saved in zip(nets.items(), teachers):  # loaded from their files
        for key, value in saved['state'].items():
            assert torch.equal(net.state_dict()[key], value), (name, key)
    before = {name: {k: v.clone() for k, v in net.state_dict().items()}
              for name, net in nets.items()}
    student_before = {k: v.clone() for k, v in distiller.student.state_dict().items()}
    # The hint's connector maps the student's 8 channels to t1's 16 (not t2's 12).
    assert distiller.connectors['feat_s'].conv.out_channels == 16
    runner.train()

    for name, net in nets.items():
        assert not net.training
        assert all(not p.requires_grad and p.grad is None for p in net.parameters())
        for key, value in before[name].items():  # weights and BN running statistics
            assert torch.equal(value, net.state_dict()[key]), (name, key)
    assert any(not torch.equal(v, distiller.student.state_dict()[k])
               for k, v in student_before.items() if v.is_floating_point())
    in_optimizer = {id(p) for group in runner.optim_wrapper.optimizer.param_groups
                    for p in group['params']}
    assert not in_optimizer & {id(p) for net in nets.values() for p in net.parameters()}
    assert {id(p) for p in distiller.student.parameters()} <= in_optimizer

    ckpt = torch.load(osp.join(str(tmp_path), 'epoch_1.pth'), weights_only=False)
    assert not any(k.startswith('teachers.') for k in ckpt['state_dict'])
    logged = []
    for path in glob.glob(osp.join(str(tmp_path), '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            logged += [json.loads(line) for line in f]
    train_lines = [line for line in logged if 'loss_kd' in line]
    assert train_lines and all(line['loss_kd'] > 0 and 'loss_hint' in line
                               for line in train_lines)


def test_teacher_evaluation_reports_each_teacher(tmp_path, fashion_mnist_root, teachers):
    from mmkd.engine.hooks import TeacherEvaluationHook
    hook = TeacherEvaluationHook(cache_file=str(tmp_path / 'cache.json'))
    # t1 as the single teacher of a KD run first: its metrics are cached then.
    cfg = runner_cfg(str(tmp_path / 'kd'), fashion_mnist_root, kd_model(teachers[0]),
                     epochs=1, train_samples=32, val_samples=64)
    runner = Runner.from_cfg(Config(cfg))
    single = hook._evaluate(runner, runner.val_loop.dataloader, runner.val_loop.evaluator, 'val')
    assert set(single) == {'teacher/accuracy/top1'}

    cfg = runner_cfg(str(tmp_path / 'mt'), fashion_mnist_root, mt_model(*teachers), epochs=1,
                     train_samples=32, val_samples=64)
    runner = Runner.from_cfg(Config(cfg))
    loop = runner.val_loop
    metrics = hook._evaluate(runner, loop.dataloader, loop.evaluator, 'val')
    # Named after the teacher, whether evaluated now (t2) or taken from the cache (t1).
    assert set(metrics) == {'teacher/t1/accuracy/top1', 'teacher/t2/accuracy/top1'}
    assert metrics['teacher/t1/accuracy/top1'] == single['teacher/accuracy/top1']
    assert runner.message_hub.get_info('teacher_metrics') == metrics
    distiller = runner.model
    for name, net in distiller.teachers.items():  # each teacher's own top-1, counted here
        correct = total = 0
        for batch in loop.dataloader:
            data = distiller.data_preprocessor(batch, False)
            with torch.no_grad():
                scores = net(data['inputs'], mode='tensor')
            labels = torch.cat([s.gt_label for s in data['data_samples']])
            correct += (scores.argmax(1) == labels).sum().item()
            total += len(labels)
        assert metrics[f'teacher/{name}/accuracy/top1'] == pytest.approx(100 * correct / total)


def test_each_teacher_runs_only_as_far_as_its_records(teachers):
    # t1 feeds the hint (up to layer2) only; t2 has no record at all.
    model = MODELS.build(mt_model(
        *teachers, recorders=None,
        student_recorders=dict(feat=dict(type='ModuleOutputs', source='backbone.layer2')),
        losses=dict(loss_hint=dict(type='MSELoss', student='feat_s', teacher='t1.feat'))))
    calls = []
    model.teachers['t1'].backbone.layer3.register_forward_hook(lambda *a: calls.append('t1'))
    model.teachers['t2'].register_forward_pre_hook(lambda *a: calls.append('t2'))
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    losses = model(torch.randn(4, 1, 28, 28), samples, mode='loss')
    assert set(losses) == {'loss_task', 'loss_hint'} and calls == []
    assert {n.name for n in nets_of(model, TEACHER) if n.runs_in_step} == {'t1'}


def assert_records_are_outputs(x: torch.Tensor, pairs) -> None:
    """Each recorded value is its net's output on ``x``; the losses are then checked
    on the records themselves, free of a repeated forward pass's round-off."""
    with torch.no_grad():
        for recorded, net in pairs:
            assert torch.allclose(recorded, net(x, mode='tensor'), rtol=1e-4, atol=1e-5)


def test_list_references_give_the_loss_every_value_in_order(teachers):
    model = MODELS.build(mt_model(*teachers))
    assert model.loss_inputs['loss_kd']['teacher'] == [RecordRef('t1', 'logits'),
                                                       RecordRef('t2', 'logits')]
    x = torch.randn(3, 1, 28, 28)
    model.run_teachers(x)
    with model.student_records.recording():
        model.student(x, mode='tensor')
    got = model.compute_distill_losses()['loss_kd']
    s = model.student_records.values()['logits']
    t1, t2 = (model.records[name].values()['logits'] for name in ('t1', 't2'))
    assert_records_are_outputs(x, [(s, model.student), (t1, model.teachers['t1']),
                                   (t2, model.teachers['t2'])])
    loss = MultiTeacherKDLoss(combine='geometric', weights=[2, 1], tau=4, loss_weight=0.9)
    assert got.item() == pytest.approx(loss(s, [t1, t2]).item(), rel=1e-6)
    assert got.item() != pytest.approx(loss(s, [t2, t1]).item(), rel=1e-4)


def test_a_single_teacher_distiller_takes_a_list_reference_too(teachers):
    t1 = teachers[0]
    model = MODELS.build(kd_model(t1, losses=dict(loss_kd=dict(
        type='MultiTeacherKDLoss', student='logits', teacher=['teacher.logits'], tau=4))))
    x = torch.randn(3, 1, 28, 28)
    model.run_teachers(x)
    with model.student_records.recording():
        model.student(x, mode='tensor')
    got = model.compute_distill_losses()['loss_kd']
    s = model.student_records.values()['logits']
    t = model.records['teacher'].values()['logits']
    assert_records_are_outputs(x, [(s, model.student), (t, model.teacher)])
    # The same KL by two formulas (log of mixed probabilities, log_softmax): float32
    # round-off of ~1e-7 on each log-probability, times tau^2 = 16.
    assert got.item() == pytest.approx(KDLoss(tau=4)(s, t).item(), rel=1e-5, abs=5e-6)


def test_teachers_can_be_kept_in_checkpoints(teachers):
    model = MODELS.build(mt_model(*teachers, teacher_in_checkpoint=True))
    state = model.state_dict()
    assert sum(k.startswith('teachers.t2.') for k in state) == len(teachers[1]['state'])
    with pytest.warns(UserWarning, match='randomly initialised'):
        fresh = MODELS.build(mt_model(*(dict(t, checkpoint=None) for t in teachers)))
    assert not torch.equal(fresh.teachers['t2'].head.fc.weight,
                           model.teachers['t2'].head.fc.weight)
    fresh.load_state_dict(state)
    for name in ('t1', 't2'):
        for key, value in model.teachers[name].state_dict().items():
            assert torch.equal(value, fresh.teachers[name].state_dict()[key]), (name, key)


@pytest.mark.parametrize('overrides, message', [
    (dict(teachers=None), 'needs teachers=dict'),
    (dict(teachers={'a.b': dict(tiny_classifier(), checkpoint=None)}), 'without "."'),
    (dict(teachers=dict(t1=tiny_classifier()), teacher_recorders=None),
     "teacher 't1' has no checkpoint"),
    (dict(teacher_recorders=dict(t3=dict())), r"teacher\(s\) \['t3'\]"),
    (dict(losses=dict(loss_kd=dict(type='MultiTeacherKDLoss', student='student.logits',
                                   teacher=['t1.logits', 't3.logits']))),
     r"names net 't3'; nets here: \['student', 't1', 't2'\]"),
    (dict(losses=dict(loss_kd=dict(type='MultiTeacherKDLoss', student='student.logits',
                                   teacher=['logits']))),
     r"does not say whose record it is.*'t1.logits'"),
    (dict(losses=dict(loss_kd=dict(type='MultiTeacherKDLoss', student='student.logits',
                                   teacher=[]))), 'empty list'),
])
def test_bad_multi_teacher_configs_are_named(teachers, overrides, message):
    with pytest.raises(DistillerConfigError, match=message):
        MODELS.build(mt_model(*teachers, **overrides))


@pytest.mark.parametrize('name, combine', [
    ('mt_arithmetic_resnet56_resnet20_resnet8_fashionmnist.py', 'arithmetic'),
    ('mt_geometric_resnet56_resnet20_resnet8_fashionmnist.py', 'geometric'),
])
def test_multi_teacher_configs_build(name, combine):
    from mmengine.registry import DefaultScope

    from mmkd.distillers import load_config
    cfg = load_config(osp.join(REPO, 'configs', 'multi_teacher', name))
    assert cfg.model.teachers.r56.checkpoint == 'work_dirs/resnet56_fashionmnist/epoch_4.pth'
    for teacher in cfg.model.teachers.values():
        teacher.checkpoint = None  # random teachers: the wiring is what is tested
    with pytest.warns(UserWarning), DefaultScope.overwrite_default_scope(cfg.default_scope):
        distiller = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    assert {n: t.backbone.depth for n, t in distiller.teachers.items()} == dict(r56=56, r20=20)
    assert distiller.student.backbone.depth == 8
    assert distiller.distill_losses['loss_kd'].combine == combine
