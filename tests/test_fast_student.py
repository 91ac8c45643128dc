"""The student trains in channels-last format where that suits it and keeps
its values (mmkd.distillers.fast_student)."""
import copy
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmpretrain.structures import DataSample
from torch import nn

from mmkd.benchmark.overhead import BenchContext, contiguous_copy, legs_for
from mmkd.distillers import DistillerConfigError
from mmkd.distillers.builder import build_model_from_cfg, model_cfg_from
from mmkd.distillers.memory_format import (
    is_channels_last,
    suits_channels_last,
    to_standard_format,
)
from mmkd.distillers.teacher import indexed_tensors
from mmkd.registry import MODELS

from conftest import REPO, build_both, kd_model, runner_cfg, with_one_box

sys.path.insert(0, osp.join(REPO, 'tools', 'benchmark'))
from detection_voc_synthetic import VOC_CONFIGS, distill_model, tiny_detector  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')

CHANNELS_LAST = torch.channels_last


def both(model: dict) -> tuple:
    """The distiller with its student in channels-last format and without, from one seed."""
    return build_both(model, 'student_channels_last')


def saved_teacher(model: dict, path: str) -> dict:
    """``model`` with a checkpoint of its initial weights, saved at ``path``."""
    cfg, scope = model_cfg_from(model, 'teacher')
    torch.manual_seed(0)
    net = build_model_from_cfg(cfg, scope)
    torch.save(dict(state_dict=net.state_dict(), meta=dict()), path)
    return dict(model, checkpoint=path)


def batch(n: int = 16, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 1, 28, 28, generator=generator) * 255).to(torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=generator)
    return dict(inputs=list(images),
                data_samples=[DataSample().set_gt_label(int(y)) for y in labels])


def has_channels_last_strides(weight: torch.Tensor) -> bool:
    """Whether ``weight`` has channels-last strides (a 1x1 weight's layouts differ in
    their strides only: is_contiguous holds for both)."""
    return weight.stride() == torch.empty(weight.shape, memory_format=CHANNELS_LAST).stride() \
        != torch.empty(weight.shape).stride()


def assert_same_gradients(fast: nn.Module, plain: nn.Module, tolerance: float = 1e-4) -> None:
    """Every trained parameter's gradient (student and connectors) agrees up to
    round-off, relative to the largest entry of each."""
    trained = [(name, a, b) for (name, a), b in zip(fast.named_parameters(),
                                                   plain.parameters()) if a.requires_grad]
    assert any(name.startswith('connectors.') for name, _, _ in trained) or \
        not len(fast.connectors)
    for name, a, b in trained:
        assert (a.grad is None) == (b.grad is None), name
        if b.grad is not None:
            scale = float(b.grad.abs().max())
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=tolerance * scale,
                                       msg=name)


def feature_kd(trained: dict, **overrides) -> dict:
    """KD on the logits plus a FitNets hint on the last stage (4-D records)."""
    return kd_model(
        trained,
        recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc'),
                       feat=dict(type='ModuleOutputs', source='backbone.layer3')),
        connectors=dict(feat_s=dict(type='ConvBNConnector', input='student.feat',
                                    like='teacher.feat')),
        losses=dict(loss_kd=dict(type='KDLoss', student='logits', teacher='logits', tau=4,
                                 loss_weight=0.9),
                    loss_hint=dict(type='MSELoss', student='feat_s', teacher='feat',
                                   loss_weight=1e-3)),
        **overrides)


def test_a_classifier_student_trains_in_channels_last_with_the_contiguous_students_steps(
        tiny_teacher):
    fast, plain = both(feature_kd(tiny_teacher))
    conv = fast.student.backbone.layer1[0].conv1
    assert is_channels_last(fast.student) and conv.weight.is_contiguous(
        memory_format=CHANNELS_LAST) and not conv.weight.is_contiguous()
    assert not is_channels_last(plain.student) and plain.student.backbone.layer1[0].conv1 \
        .weight.is_contiguous()
    # The connector trains in channels-last format too (it follows the setting).
    assert is_channels_last(fast.connectors['feat_s'])
    assert not is_channels_last(plain.connectors['feat_s'])
    # The losses read the student's 4-D records, and the connector's output, in the usual
    # layout.
    for distiller in (fast, plain):  # in eval mode: no BN statistics move
        distiller.eval()
        data = distiller.data_preprocessor(batch(), True)
        seen = distiller.distillation_inputs(data['inputs'], data['data_samples'])
        assert seen['loss_hint']['student'].is_contiguous()
        distiller.train()

    # The same gradients up to round-off (relative to each tensor's largest entry) ...
    for distiller in (fast, plain):
        data = distiller.data_preprocessor(batch(), True)
        losses = distiller(data['inputs'], data['data_samples'], mode='loss')
        sum(losses.values()).backward()
    assert_same_gradients(fast, plain)
    for distiller in (fast, plain):
        distiller.zero_grad()
    # ... and the same losses along three SGD steps.
    cfg = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))
    wrappers = [build_optim_wrapper(m, copy.deepcopy(cfg)) for m in (fast, plain)]
    for step in range(3):
        logs = [m.train_step(batch(seed=step), w) for m, w in zip((fast, plain), wrappers)]
        for key in logs[1]:
            torch.testing.assert_close(logs[0][key], logs[1][key], rtol=1e-4, atol=1e-5,
                                       msg=key)
    # The optimizer's momentum follows its parameter's layout.
    momentum = wrappers[0].optimizer.state[conv.weight]['momentum_buffer']
    assert momentum.is_contiguous(memory_format=CHANNELS_LAST)


def test_a_trained_run_resumes_and_exports_a_plain_student(tiny_teacher, fashion_mnist_root,
                                                           tmp_path):
    """Checkpoints of a channels-last student resume bit for bit and load into a
    plain, contiguous mmpretrain classifier; so do its channels-last connectors."""
    model = feature_kd(tiny_teacher)
    work = str(tmp_path / 'full')
    Runner.from_cfg(Config(runner_cfg(work, fashion_mnist_root, model, epochs=2))).train()
    half = tmp_path / 'half'
    half.mkdir()
    shutil.copy(osp.join(work, 'epoch_1.pth'), half / 'epoch_1.pth')  # stopped after epoch 1
    cfg = runner_cfg(str(half), fashion_mnist_root, model, epochs=2)
    cfg.update(resume=True, load_from=str(half / 'epoch_1.pth'))
    runner = Runner.from_cfg(Config(cfg))
    runner.train()
    conv = runner.model.student.backbone.layer2[0].conv2.weight  # trained in channels-last
    assert conv.is_contiguous(memory_format=CHANNELS_LAST) and not conv.is_contiguous()
    assert has_channels_last_strides(runner.model.connectors['feat_s'].conv.weight)
    full = torch.load(osp.join(work, 'epoch_2.pth'), weights_only=False)['state_dict']
    resumed = torch.load(half / 'epoch_2.pth', weights_only=False)['state_dict']
    for key in full:
        assert torch.equal(full[key], resumed[key]), key

    student = PRETRAIN_MODELS.build(copy.deepcopy(model['student']))
    student.load_state_dict({k[len('student.'):]: v for k, v in full.items()
                             if k.startswith('student.')})
    for key, value in student.state_dict().items():
        assert torch.equal(value, full[f'student.{key}']), key


class _FlattenWithView(nn.Module):
    """A neck written for contiguous maps: ``view(n, -1)`` fails on channels-last ones."""

    def forward(self, inputs):
        x = inputs[-1]
        n, c = x.shape[:2]
        return (x.view(n, -1).view(n, c, -1).mean(-1),)


def test_a_student_that_fails_on_channels_last_tensors_keeps_its_format(tiny_teacher):
    if 'FlattenWithViewNeck' not in PRETRAIN_MODELS:
        PRETRAIN_MODELS.register_module('FlattenWithViewNeck', module=_FlattenWithView)
    model = feature_kd(tiny_teacher)
    model['student'] = dict(model['student'], neck=dict(type='FlattenWithViewNeck'))
    with pytest.warns(UserWarning, match='fails on channels-last tensors'):
        distiller = MODELS.build(model)
    assert not is_channels_last(distiller.student)
    assert distiller.student.backbone.layer1[0].conv1.weight.is_contiguous()
    # Its connector stays contiguous too: it follows the student.
    assert not is_channels_last(distiller.connectors['feat_s'])
    assert not has_channels_last_strides(distiller.connectors['feat_s'].conv.weight)
    cfg = dict(optimizer=dict(type='SGD', lr=0.05))
    distiller.train_step(batch(), build_optim_wrapper(distiller, cfg))  # trains as built

    off = MODELS.build(dict(feature_kd(tiny_teacher), student_channels_last=False))
    assert not is_channels_last(off.student) and not is_channels_last(off.connectors['feat_s'])
    with pytest.raises(DistillerConfigError, match='student_channels_last must be True or False'):
        MODELS.build(dict(kd_model(tiny_teacher), student_channels_last='yes'))


def review_kd(trained: dict) -> dict:
    """Knowledge Review on the tiny nets, wired as configs/reviewkd: ABFs and the HCL loss."""
    levels = dict(student=['student.feats', 'student.pooled'],
                  teacher=['teacher.feats', 'teacher.pooled'])
    return kd_model(
        trained,
        recorders=dict(pooled=dict(type='ModuleOutputs', source='neck', item=-1, as_map=True)),
        student_recorders=dict(feats=dict(type='StageFeatures', pre_relu=False)),
        teacher_recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
        connectors=dict(review=dict(type='ReviewKDConnector', input=levels['student'],
                                    like=levels['teacher'])),
        losses=dict(loss_review=dict(type='HCLLoss', student='review',
                                     teacher=levels['teacher'], loss_weight=0.6)))


def vid(trained: dict) -> dict:
    """VID on the tiny nets, wired as configs/vid: one regressor per stage, each
    returning a named tuple (mean, variance)."""
    return kd_model(
        trained,
        recorders=dict(feats=dict(type='StageFeatures', pre_relu=False)),
        connectors=dict(vid=dict(type='ConnectorList', connector=dict(type='VIDRegressor'),
                                 input='student.feats', like='teacher.feats')),
        losses=dict(loss_vid=dict(type='VIDLoss', student='vid', teacher='teacher.feats',
                                  loss_weight=1.0)))


def four_d_tensors(value) -> list:
    return [tensor for _, tensor in indexed_tensors(value) if tensor.dim() == 4]


@pytest.mark.parametrize('method', [review_kd, vid], ids=['reviewkd', 'vid'])
def test_connectors_train_in_channels_last_with_the_contiguous_ones_losses_and_gradients(
        tiny_teacher, method):
    fast, plain = both(method(tiny_teacher))
    (name, connector), = fast.connectors.items()
    convs = [m for m in connector.modules() if isinstance(m, nn.Conv2d)]
    assert is_channels_last(connector) and not is_channels_last(plain.connectors[name])
    assert all(has_channels_last_strides(c.weight) for c in convs)
    (loss_name,) = fast.distill_losses
    # The comparison is of the connectors: both students contiguous (VID's loss, about 2e4
    # here, makes the student's own round-off in channels-last 1e-3 of its largest gradient).
    to_standard_format(fast.student)
    found = []
    for distiller in (fast, plain):
        distiller.eval()  # the loss reads the connector's outputs in the usual layout
        data = distiller.data_preprocessor(batch(), True)
        seen = distiller.distillation_inputs(data['inputs'], data['data_samples'])
        outputs = four_d_tensors(seen[loss_name]['student'])
        assert outputs and all(t.is_contiguous() for t in outputs)
        distiller.train()
        losses = distiller(data['inputs'], data['data_samples'], mode='loss')
        sum(losses.values()).backward()
        found.append(losses)
    for key, value in found[1].items():
        torch.testing.assert_close(found[0][key], value, rtol=1e-4, atol=1e-6, msg=key)
    assert_same_gradients(fast, plain)


class _FlattenedConnector(nn.Module):
    """A 1x1 conv connector written for contiguous maps: ``view(n, -1)`` of its
    channels-last output fails."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        y = self.conv(x)
        return y.view(len(y), -1).view(y.shape)


def test_connectors_that_fail_on_channels_last_tensors_keep_their_format(tiny_teacher):
    if 'FlattenedConnector' not in MODELS:
        MODELS.register_module('FlattenedConnector', module=_FlattenedConnector)
    model = feature_kd(tiny_teacher)
    model['connectors'] = dict(
        feat_s=dict(type='FlattenedConnector', input='student.feat', like='teacher.feat'),
        feat_bn=dict(type='ConvBNConnector', input='student.feat', like='teacher.feat'))
    with pytest.warns(UserWarning, match='connectors: in channels-last format, the forward '
                                         'fails'):
        distiller = MODELS.build(model)
    assert is_channels_last(distiller.student)  # the student's own check passed
    conv = distiller.connectors['feat_s'].conv
    for connector in distiller.connectors.values():  # all of them or none
        assert not is_channels_last(connector)
        assert not any(has_channels_last_strides(p) for p in connector.parameters()
                       if p.dim() == 4)
    before = conv.weight.detach().clone()
    cfg = dict(optimizer=dict(type='SGD', lr=0.05))
    distiller.train_step(batch(), build_optim_wrapper(distiller, cfg))  # trains as built
    assert not torch.equal(conv.weight, before)


def test_a_retinanet_student_trains_in_channels_last_a_faster_rcnn_one_does_not(tmp_path):
    teacher = saved_teacher(tiny_detector('retinanet', depth=50, base_channels=8),
                            str(tmp_path / 'retinanet.pth'))
    config = osp.join(VOC_CONFIGS, 'fpn_retinanet_r50_r18_voc0712.py')
    model = distill_model(config, tiny_detector('retinanet'), teacher, teacher['checkpoint'])
    fast, plain = both(Config(dict(model=model)).model)
    assert is_channels_last(fast.student) and not is_channels_last(plain.student)
    x = torch.randn(2, 3, 96, 96)
    samples = with_one_box(fast.dry_run_samples(x))
    found = []
    for distiller in (fast, plain):
        distiller.train()
        losses = distiller(x, samples, mode='loss')
        total = sum(v for k, v in losses.items() if 'loss' in k and isinstance(v, torch.Tensor))
        total.backward()
        found.append((losses, distiller.student.backbone.conv1.weight.grad))
    for name, value in found[1][0].items():
        torch.testing.assert_close(found[0][0][name], value, rtol=1e-4, atol=1e-6, msg=name)
    grad = found[1][1]  # sums over many terms: round-off relative to the largest
    torch.testing.assert_close(found[0][1], grad, rtol=0, atol=1e-3 * float(grad.abs().max()))

    teacher = saved_teacher(tiny_detector('faster-rcnn', depth=50, base_channels=8),
                            str(tmp_path / 'frcnn.pth'))
    frcnn = distill_model(osp.join(VOC_CONFIGS, 'fpn_faster-rcnn_r50_r18_voc0712.py'),
                          tiny_detector('faster-rcnn'), teacher, teacher['checkpoint'])
    distiller = MODELS.build(Config(dict(model=frcnn)).model)
    assert not suits_channels_last(distiller.student)  # mmcv's RoIAlign reads NCHW memory
    assert not is_channels_last(distiller.student)


def test_the_overhead_benchmark_times_the_student_as_built(tiny_teacher):
    distiller = MODELS.build(kd_model(tiny_teacher))
    legs = {leg.name: leg for leg in legs_for(distiller, BenchContext(dict(
        optimizer=dict(type='SGD', lr=0.1))), batch())}
    assert legs['plain:student'].reference_for == 'student'
    assert 'reference' in legs  # the hand-written KD step
    # The reference is the student as built: contiguous, no hooks; the distiller's is not.
    plain = contiguous_copy(distiller.student)
    for copied, own in ((plain, False), (distiller.student, True)):
        conv = copied.backbone.layer2[0].conv2.weight
        assert conv.is_contiguous() is not own
        assert bool(copied.backbone.layer2[0].downsample[0]._forward_pre_hooks) is own


STRIDED_POINTWISE_STEP = '''
import torch
import mmkd  # noqa: F401
from mmkd.distillers.memory_format import to_channels_last
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1),
                          torch.nn.Conv2d(8, 16, 1, stride=2, bias=False))
to_channels_last(net, trained=True)
x = torch.randn(2, 8, 64, 64)
for _ in range(3):
    net(x).sum().backward()
print('grad', float(net[1].weight.grad.abs().sum()))
'''


def test_strided_pointwise_convs_of_a_trained_net_stay_contiguous(tiny_teacher):
    """PyTorch's channels-last CPU kernel for the weight gradient of a strided 1x1 conv
    corrupts the heap (8 input channels at 64 x 64 aborts); a trained net keeps such
    convs, and their inputs, contiguous. The steps run in a process of their own (a
    regression would abort it, not the test session)."""
    run = subprocess.run([sys.executable, '-c', STRIDED_POINTWISE_STEP], capture_output=True,
                         text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO))
    assert run.returncode == 0 and 'grad' in run.stdout, run.stderr[-2000:]

    # A distiller's student: its downsampling shortcuts are contiguous, the rest is not.
    distiller = MODELS.build(kd_model(tiny_teacher))
    shortcut = distiller.student.backbone.layer2[0].downsample[0]
    assert tuple(shortcut.stride) == (2, 2)
    # A 1x1 weight's layouts differ in their strides only (is_contiguous holds for both).
    assert shortcut.weight.stride() == torch.empty(shortcut.weight.shape).stride()
    assert not distiller.student.backbone.layer2[0].conv2.weight.is_contiguous()
    assert len(shortcut._forward_pre_hooks) == 1
    to_standard_format(distiller.student)
    assert not shortcut._forward_pre_hooks  # undone with the format
