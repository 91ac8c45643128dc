"""SingleTeacherDistiller with real mmpretrain classifiers in real runners."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmkd.distillers import TEACHER, DistillerConfigError, TeacherCheckpointError, nets_of
from mmkd.recorders import RecorderPathError, RecordNotFoundError
from mmkd.registry import MODELS

from conftest import REPO, STUDENT_WIDTHS, kd_model, runner_cfg, tiny_classifier


def build(model: dict):
    return MODELS.build(model)


def scalars(work_dir: str) -> list:
    """Every line of the run's scalars.json."""
    found = []
    import glob
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            found += [json.loads(line) for line in f]
    return found


def test_kd_run_keeps_the_teacher_frozen_and_logs_each_loss(tmp_path, fashion_mnist_root,
                                                            tiny_teacher):
    cfg = runner_cfg(str(tmp_path), fashion_mnist_root, kd_model(tiny_teacher), epochs=1)
    runner = Runner.from_cfg(Config(cfg))
    teacher = runner.model.teacher
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    assert any('running_mean' in k for k in before)
    runner.train()

    after = teacher.state_dict()
    for key, value in before.items():  # weights and BN running statistics
        assert torch.equal(value, after[key]), key
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    in_optimizer = {id(p) for group in runner.optim_wrapper.optimizer.param_groups
                    for p in group['params']}
    assert not in_optimizer & {id(p) for p in teacher.parameters()}
    assert {id(p) for p in runner.model.student.parameters()} <= in_optimizer

    logged = scalars(str(tmp_path))
    train_lines = [line for line in logged if 'loss_kd' in line]
    assert train_lines and all('loss' in line for line in train_lines)
    assert all(line['loss_kd'] > 0 for line in train_lines)
    # `loss` is the total that is optimised; the student's cross-entropy has its own name.
    for line in train_lines:
        assert line['loss'] == pytest.approx(line['loss_task'] + line['loss_kd'], rel=1e-5)
    assert any('accuracy/top1' in line for line in logged)  # student validation
    teacher_metrics = runner.message_hub.get_info('teacher_metrics')
    assert 0 <= teacher_metrics['teacher/accuracy/top1'] <= 100

    ckpt = torch.load(osp.join(str(tmp_path), 'epoch_1.pth'), weights_only=False)
    assert not any(k.startswith('teacher.') for k in ckpt['state_dict'])
    assert any(k.startswith('student.') for k in ckpt['state_dict'])

    # The results table reads the same logs: student top-1 and the teacher's.
    table = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'analysis',
                                                     'summarize_runs.py'), str(tmp_path)],
                           capture_output=True, text=True, check=True).stdout
    row = next(line for line in table.splitlines() if line.startswith(f'| {tmp_path.name} '))
    final = [line['accuracy/top1'] for line in logged if 'accuracy/top1' in line][-1]
    assert f'| {final:.2f} |' in row
    assert f'| {teacher_metrics["teacher/accuracy/top1"]:.2f} |' in row


def test_teacher_weights_can_be_kept_in_checkpoints(tiny_teacher):
    model = build(kd_model(tiny_teacher, teacher_in_checkpoint=True))
    state = model.state_dict()
    teacher_keys = [k for k in state if k.startswith('teacher.')]
    assert len(teacher_keys) == len(model.teacher.state_dict())
    fresh = build(kd_model(dict(tiny_teacher, checkpoint=None)))
    fresh.load_state_dict(state)
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, fresh.teacher.state_dict()[key])


def test_pre_relu_records_keep_negative_values(tiny_teacher):
    model = build(kd_model(tiny_teacher, recorders=dict(
        # The block's second relu call: its input is the block's pre-ReLU output.
        pre=dict(type='ModuleInputs', source='backbone.layer3.0.relu', call_index=1),
        bn=dict(type='ModuleOutputs', source='backbone.layer3.0.bn2'),
        logits=dict(type='ModuleOutputs', source='head.fc'))))
    # The dry run found that `relu_` and `out += identity` overwrite these.
    assert model.student_records['pre'].clone
    assert model.records['teacher']['bn'].clone
    assert not model.records['teacher']['logits'].clone
    x = torch.randn(4, 1, 28, 28)
    with model.records['teacher'].recording():
        model.teacher(x, mode='tensor')
    pre = model.records['teacher']['pre'].get()
    assert (pre < 0).any(), 'pre-ReLU feature lost its negative values'


def test_an_overwritten_reference_is_refused_not_returned(tiny_teacher):
    from mmkd.recorders import RecorderGroup
    teacher = build(tiny_teacher['model'])
    group = RecorderGroup(teacher, dict(pre=dict(type='ModuleInputs', clone=False,
                                                 source='backbone.layer1.0.relu',
                                                 call_index=1)))
    with group.recording():
        teacher(torch.randn(2, 1, 28, 28), mode='tensor')
    with pytest.raises(RecordNotFoundError, match='clone=True'):
        group.values()


def test_teacher_runs_only_as_far_as_its_records(tiny_teacher):
    model = build(kd_model(
        tiny_teacher, recorders=dict(feat=dict(type='ModuleOutputs', source='backbone.layer2')),
        connectors=dict(feat_s=dict(type='ConvBNConnector', input='student.feat',
                                    like='teacher.feat')),
        losses=dict(loss_hint=dict(type='MSELoss', student='feat_s', teacher='feat'))))
    calls = []
    model.teacher.backbone.layer3.register_forward_hook(lambda *a: calls.append('layer3'))
    model.teacher.head.register_forward_hook(lambda *a: calls.append('head'))
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    losses = model(torch.randn(4, 1, 28, 28), samples, mode='loss')
    assert calls == []
    assert set(losses) == {'loss_task', 'loss_hint'}
    # The connector's channels came from the records: student 8 -> teacher 16.
    conv = model.connectors['feat_s'].conv
    assert (conv.in_channels, conv.out_channels) == (8, 16)
    losses['loss_hint'].backward()
    assert conv.weight.grad is not None


@pytest.mark.parametrize('overrides, error, message', [
    (dict(recorders=dict(logits=dict(type='ModuleOutputs', source='head.fcc'))),
     RecorderPathError, r"no module 'head.fcc'.*head.fc"),
    (dict(losses=dict(loss_kd=dict(type='KDLoss', teacher='logits'))),
     DistillerConfigError, r"\['student'\].*not mapped"),
    (dict(losses=dict(loss_kd=dict(type='KDLoss', student='logit', teacher='logits'))),
     DistillerConfigError, r"student has no record 'logit'"),
    (dict(losses=dict(kd=dict(type='KDLoss', student='logits', teacher='logits'))),
     DistillerConfigError, 'must contain "loss"'),
    (dict(losses=dict(loss_kd=dict(type='KDLoss', student='logits', teacher='logits',
                                   temperature=4))),
     DistillerConfigError, r"unknown argument 'temperature'"),
    (dict(recorders=dict(feat=dict(type='ModuleOutputs', source='backbone.layer3')),
          losses=dict(loss_hint=dict(type='MSELoss', student='feat', teacher='feat'))),
     DistillerConfigError, r'\(2, 8, 7, 7\).*\(2, 16, 7, 7\).*ConvBNConnector'),
    (dict(recorders=dict(pre=dict(type='ModuleInputs', source='backbone.layer1.0.relu',
                                  call_index=2))),
     RecordNotFoundError, r'ran 2 time\(s\).*call_index=2'),
    (dict(teacher=None), DistillerConfigError, 'needs teacher=dict'),
    (dict(losses=dict(loss_kd=dict(type='KDLoss', student='logits', teacher='logits',
                                   tau='4'))),
     DistillerConfigError, r"loss 'loss_kd' \(KDLoss\): tau='4' is a str; it takes a number"),
    (dict(losses=dict(loss_kd=dict(type='KDLoss', student='logits', teacher='logits',
                                   loss_weight='0.9'))),
     DistillerConfigError, r"loss_weight='0.9' is a str; it takes a number"),
    (dict(recorders=dict(feat=dict(type='ModuleOutputs', source='backbone.layer3')),
          connectors=dict(feat_s=dict(type='ConvBNConnector', input='student.feat',
                                      like='teacher.feat', kernel_size='3')),
          losses=dict(loss_hint=dict(type='MSELoss', student='feat_s', teacher='feat'))),
     DistillerConfigError, r"connector 'feat_s' \(ConvBNConnector\): kernel_size='3' is a str"),
    (dict(student=dict(tiny_classifier(depth=8, widths=STUDENT_WIDTHS),
                       head=dict(type='LinearClsHead', num_classes=5, in_channels=8,
                                 loss=dict(type='CrossEntropyLoss')))),
     DistillerConfigError, r'\(2, 5\).*\(2, 10\).*different classes \(5 and 10\).*'
                           r'LinearConnector'),
])
def test_bad_input_gets_a_message_a_person_can_act_on(tiny_teacher, overrides, error, message):
    with pytest.raises(error, match=message):
        build(kd_model(tiny_teacher, **overrides))


def test_a_task_model_without_its_scope_is_built_in_its_package(tiny_teacher):
    """A bare type only one task package has is built in that package's scope (its parts
    too); a type several packages have is refused, naming them and the key to set."""
    student = tiny_classifier()
    del student['_scope_']
    model = build(kd_model(tiny_teacher, student=student))
    assert type(model.student).__module__.startswith('mmpretrain.')
    assert type(model.student.head.loss_module).__module__.startswith('mmpretrain.')
    from mmkd.distillers import build_model_from_cfg
    with pytest.raises(KeyError, match=r"'ResNet' is a model of \['mmpretrain', 'mmdet', "
                                       r"'mmseg'\]: add _scope_='mmpretrain'"):
        build_model_from_cfg(dict(type='ResNet', depth=18))


def test_teacher_checkpoint_that_does_not_fit_lists_keys(tiny_teacher):
    wrong_teacher = dict(tiny_classifier(depth=8, widths=(8, 8, 16, 16)),
                         checkpoint=tiny_teacher['checkpoint'])
    with pytest.raises(TeacherCheckpointError, match=r'unexpected keys \d+ .*layer1\.1'):
        build(kd_model(tiny_teacher, teacher=wrong_teacher))
    missing_file = dict(tiny_teacher['model'], checkpoint='nowhere/teacher.pth')
    with pytest.raises(FileNotFoundError, match='Train the teacher first'):
        build(kd_model(tiny_teacher, teacher=missing_file))
    no_ckpt = dict(tiny_teacher['model'])
    with pytest.raises(DistillerConfigError, match='teacher has no checkpoint'):
        build(kd_model(tiny_teacher, teacher=no_ckpt))


def test_predict_runs_the_student(tiny_teacher):
    model = build(kd_model(tiny_teacher)).eval()
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(model(x, mode='tensor'), model.student(x, mode='tensor'))
    preds = model(x, None, mode='predict')
    assert len(preds) == 3 and preds[0].pred_score.shape == (10, )


def test_loss_schedule_hook_warms_up_and_stops(tmp_path, fashion_mnist_root, tiny_teacher):
    from mmkd.engine import DistillLossScheduleHook
    hook = DistillLossScheduleHook(warmup=2, stop=3)
    assert [hook.factor(p) for p in (0.5, 1, 2, 2.5, 3, 3.1)] == [0.25, 0.5, 1, 1, 1, 0]
    cfg = runner_cfg(str(tmp_path), fashion_mnist_root, kd_model(tiny_teacher), epochs=2)
    cfg['custom_hooks'] = [dict(type='DistillLossScheduleHook', warmup=0, stop=1)]
    cfg['log_processor'] = dict(by_epoch=True, window_size=1)  # log each value, not a mean
    Runner.from_cfg(Config(cfg)).train()
    lines = [line for line in scalars(str(tmp_path)) if 'loss_kd' in line]
    first = [line['loss_kd'] for line in lines if line['epoch'] == 1]
    second = [line['loss_kd'] for line in lines if line['epoch'] == 2]
    assert all(v > 0 for v in first) and all(v == 0 for v in second)


def test_teacher_metrics_are_cached_per_checkpoint_and_data(tmp_path, fashion_mnist_root,
                                                            tiny_teacher):
    from mmkd.engine.hooks import TeacherEvaluationHook
    cfg = runner_cfg(str(tmp_path / 'run'), fashion_mnist_root, kd_model(tiny_teacher),
                     epochs=1, val_samples=64)
    runner = Runner.from_cfg(Config(cfg))
    hook = TeacherEvaluationHook(cache_file=str(tmp_path / 'cache.json'))
    first = hook._evaluate(runner, runner.val_loop.dataloader, runner.val_loop.evaluator, 'val')
    for p in runner.model.teacher.parameters():  # an evaluation now would change the metrics
        p.data.zero_()
    again = hook._evaluate(runner, runner.val_loop.dataloader, runner.val_loop.evaluator, 'val')
    assert again == first
    uncached = TeacherEvaluationHook(cache_file=None)._evaluate(
        runner, runner.val_loop.dataloader, runner.val_loop.evaluator, 'val')
    assert uncached != first
    # Other data (here: the test split's config) is another key.
    runner.cfg.val_dataloader.dataset.indices = 32
    net = nets_of(runner.model, TEACHER)[0]
    fresh = Runner.from_cfg(Config(cfg))
    assert hook._cache_key(runner, net, 'val') != hook._cache_key(
        fresh, nets_of(fresh.model, TEACHER)[0], 'val')


def test_teacher_metrics_are_not_reused_with_another_preprocessor(tmp_path, fashion_mnist_root,
                                                                  tiny_teacher):
    """The same teacher and data through other normalisation is another evaluation."""
    from mmkd.engine.hooks import TeacherEvaluationHook
    cache = str(tmp_path / 'cache.json')
    metrics = {}
    for name, preprocessor in (('trained', None), ('unnormalised', dict(mean=[0.], std=[1.]))):
        cfg = runner_cfg(str(tmp_path / name), fashion_mnist_root, kd_model(tiny_teacher),
                         epochs=1, val_samples=64)
        if preprocessor is not None:
            cfg['model']['data_preprocessor'] = preprocessor
        runner = Runner.from_cfg(Config(cfg))
        metrics[name] = TeacherEvaluationHook(cache_file=cache)._evaluate(
            runner, runner.val_loop.dataloader, runner.val_loop.evaluator, 'val')
        fresh = TeacherEvaluationHook(cache_file=None)._evaluate(
            runner, runner.val_loop.dataloader, runner.val_loop.evaluator, 'val')
        assert metrics[name] == fresh, name  # what the cache gave is what an evaluation gives
    assert metrics['trained'] != metrics['unnormalised']
