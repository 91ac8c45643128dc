"""OFD: margins, partial L2, pre-ReLU positions, connectors, teacher BN mode, a real run."""
import glob
import math
import os.path as osp
from contextlib import ExitStack

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from torch import nn

from mmkd.connectors import MarginReLU, margin_from_bn
from mmkd.distillers import DistillerConfigError
from mmkd.losses import OFDLoss
from mmkd.recorders import ModuleInputs, ModuleOutputs, StageFeatures
from mmkd.registry import MODELS
from mmkd.utils.checkpoint import safe_torch_load

from conftest import STUDENT_WIDTHS, runner_cfg, tiny_classifier


def numeric_margin(gamma: float, beta: float) -> float:
    """E[x | x < 0] for x ~ N(beta, gamma^2) by integrating the density on a fine grid."""
    s, m = abs(gamma), beta
    x = torch.linspace(min(m - 12 * s, -1e-9), 0.0, 400001, dtype=torch.float64)
    density = torch.exp(-0.5 * ((x - m) / s)**2)
    mass = torch.trapezoid(density, x)
    if mass / (s * math.sqrt(2 * math.pi)) <= 1e-3:
        return -3 * s
    return float(torch.trapezoid(x * density, x) / mass)


@pytest.mark.parametrize('gamma,beta', [(1.0, 0.0), (0.5, 0.3), (-2.0, -1.0), (0.3, 0.8),
                                        (1.5, 2.0), (0.2, 1.0), (0.1, 5.0)])
def test_margin_matches_numerical_integration(gamma, beta):
    bn = nn.BatchNorm2d(1)
    bn.weight.data.fill_(gamma)
    bn.bias.data.fill_(beta)
    expected = numeric_margin(gamma, beta)
    got = margin_from_bn(bn).item()
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert got < 0


def test_margin_uses_minus_three_sigma_when_negatives_are_rare():
    bn = nn.BatchNorm2d(3)
    bn.weight.data = torch.tensor([0.1, 0.2, 1.0])
    bn.bias.data = torch.tensor([5.0, 0.7, 0.0])   # P(x<0): ~3e-7, 2e-4, 0.5
    margins = margin_from_bn(bn)
    assert margins[0].item() == pytest.approx(-0.3)
    assert margins[1].item() == pytest.approx(-0.6)
    assert margins[2].item() == pytest.approx(-math.sqrt(2 / math.pi), rel=1e-6)


def test_partial_l2_hand_computed_with_all_four_mask_cases():
    # Four elements, one per case of (s > t, t > 0):
    #   s=2, t=1:    s>t, t>0   -> counted, (1)^2 = 1
    #   s=0.5, t=1:  s<t, t>0   -> counted, (0.5)^2 = 0.25
    #   s=-1, t=-2:  s>t, t<=0  -> counted, (1)^2 = 1
    #   s=-3, t=-2:  s<t, t<=0  -> not counted
    s = torch.tensor([2.0, 0.5, -1.0, -3.0]).view(1, 4, 1, 1)
    t = torch.tensor([1.0, 1.0, -2.0, -2.0]).view(1, 4, 1, 1)
    loss = OFDLoss(normalizer=1.0)([s], [t])
    assert loss.item() == pytest.approx(2.25)
    # Batch of two, normaliser 10: divided by 2 * 10.
    assert OFDLoss(normalizer=10.0)(torch.cat([s, s]), torch.cat([t, t])).item() == \
        pytest.approx(2 * 2.25 / 20)


def test_stage_weights_halve_towards_the_input():
    one = torch.ones(1, 1, 1, 1)
    zero = torch.zeros(1, 1, 1, 1)
    loss = OFDLoss(normalizer=1.0)
    assert loss.weights(3) == [0.25, 0.5, 1.0]
    # Only the first of three stages differs (by 1): weight 1/4.
    assert loss([one, zero, zero], [zero, zero, zero]).item() == pytest.approx(0.25)


def test_margin_relu_applies_max_and_keeps_buffers():
    connector = MarginReLU(channels=[2], margins=[[-0.5, -1.0]])
    x = torch.tensor([[-2.0, 3.0], [-0.2, -4.0]]).view(1, 2, 2, 1)
    out = connector([x])[0]
    torch.testing.assert_close(out.view(-1), torch.tensor([-0.5, 3.0, -0.2, -1.0]))
    assert 'margin0' in connector.state_dict()


def test_margin_estimate_for_teachers_without_bn():
    connector = MarginReLU(channels=1, estimate=True, momentum=0.5).train()
    connector(torch.tensor([-1.0, -3.0, 2.0]).view(1, 1, 3, 1))
    assert connector.margin0.item() == pytest.approx(-2.0)   # first batch: its mean
    connector(torch.tensor([-4.0, 1.0]).view(1, 1, 2, 1))
    assert connector.margin0.item() == pytest.approx(-3.0)   # -2 + 0.5 * (-4 - -2)
    connector.eval()(torch.tensor([-10.0]).view(1, 1, 1, 1))
    assert connector.margin0.item() == pytest.approx(-3.0)   # frozen outside training


def _backbones():
    from mmdet.models.backbones import ResNet as DetResNet
    from mmpretrain.models.backbones import ResNet, ResNet_CIFAR, ResNetV1d
    from mmseg.models.backbones import ResNetV1c

    from mmkd.models.backbones import CIFARResNet, WideResNet
    small = dict(depth=18, base_channels=8, stem_channels=8)  # PyTorch's default init
    return {
        'mmpretrain ResNet-18': (ResNet(**small), 4),
        'mmpretrain ResNet-50': (ResNet(**dict(small, depth=50, base_channels=4)), 4),
        'mmpretrain ResNetV1d': (ResNetV1d(**small), 4),
        'mmpretrain ResNet_CIFAR': (ResNet_CIFAR(**small), 4),
        'mmdet ResNet': (DetResNet(**small), 4),
        'mmseg ResNetV1c': (ResNetV1c(**small), 4),
        'mmkd CIFARResNet': (CIFARResNet(depth=8, widths=STUDENT_WIDTHS), 3),
        'mmkd WideResNet': (WideResNet(depth=10, widen_factor=1), 3),
    }


class _Wrap(nn.Module):

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone(x)


@pytest.mark.parametrize('name', list(_backbones()))
def test_pre_relu_positions_hold_negative_values_and_feed_the_relu(name):
    torch.manual_seed(0)
    backbone, num_stages = _backbones()[name]
    model = _Wrap(backbone).eval()
    rec = StageFeatures().attach(model)
    outputs = [ModuleOutputs(p, clone=True).attach(model) for p in rec.stage_paths]
    x = torch.randn(2, 3, 32, 32)
    assert not rec.located
    with torch.no_grad(), rec.probe():  # one forward finds the positions, once
        model(x)
    with ExitStack() as stack:
        for recorder in [rec, *outputs]:
            stack.enter_context(recorder)
        model(x)
    feats = rec.get()
    assert len(feats) == num_stages
    for feat, path in zip(feats, rec.stage_paths):
        assert (feat < 0).any(), f'{name}: no negative value at {path}'
    # Each position is an ordinary module recorder: a rectifier's input at a call index.
    for feat, position in zip(feats, rec.positions()):
        plain = ModuleInputs(position.path, call_index=position.call_index, clone=True)
        with plain.attach(model):
            model(x)
        assert position.is_input and torch.equal(plain.get(), feat)
    post_activation = all(p.path.startswith(stage + '.')
                          for p, stage in zip(rec.positions(), rec.stage_paths))
    if post_activation:  # the stage output is the ReLU of the recorded tensor
        for feat, out in zip(feats, outputs):
            torch.testing.assert_close(feat.clamp(min=0), out.get())
    else:
        assert name == 'mmkd WideResNet'
    norms = rec.norm_layers()
    assert all(isinstance(n, nn.BatchNorm2d) for n in norms)
    assert all('downsample' not in p for p in rec.norm_paths())
    assert [n.num_features for n in norms] == [f.shape[1] for f in feats]


def test_pre_activation_net_takes_the_next_bn_relu_input():
    from mmkd.models.backbones import WideResNet
    model = _Wrap(WideResNet(depth=10, widen_factor=1)).eval()
    rec = StageFeatures().attach(model)
    with rec.probe():
        model(torch.randn(2, 3, 32, 32))
    assert rec.norm_paths() == ['backbone.layer2.0.bn1', 'backbone.layer3.0.bn1',
                                'backbone.final_bn']


def test_margin_relu_needs_a_bn_and_says_how_to_give_one(tiny_teacher):
    with pytest.raises(DistillerConfigError, match='norms=|estimate=True'):
        MODELS.build(_ofd_model(tiny_teacher, recorders=dict(
            feats=dict(type='ModuleOutputs', source='backbone.layer3'))))


def _ofd_model(trained: dict, **overrides) -> dict:
    model = dict(
        type='SingleTeacherDistiller',
        student=tiny_classifier(depth=8, widths=STUDENT_WIDTHS),
        teacher=dict(trained['model'], checkpoint=trained['checkpoint']),
        recorders=dict(feats=dict(type='StageFeatures')),
        connectors=dict(
            feats_s=dict(type='ConnectorList', connector=dict(type='ConvBNConnector'),
                         input='student.feats', like='teacher.feats'),
            feats_t=dict(type='MarginReLU', input='teacher.feats')),
        losses=dict(loss_ofd=dict(type='OFDLoss', student='feats_s', teacher='feats_t')),
        dry_run_shape=(1, 28, 28))
    if 'recorders' in overrides:
        model['connectors'] = dict(feats_t=dict(type='MarginReLU', input='teacher.feats'))
        model['losses'] = dict(loss_ofd=dict(type='OFDLoss', student='student.feats',
                                             teacher='feats_t'))
    model.update(overrides)
    return model


def test_student_connector_initialisation_and_inferred_channels(tiny_teacher):
    distiller = MODELS.build(_ofd_model(tiny_teacher))
    items = distiller.connectors['feats_s'].items
    assert [c.conv.in_channels for c in items] == [4, 8, 8]
    assert [c.conv.out_channels for c in items] == [8, 16, 16]
    for c in items:
        assert c.conv.bias is None
        assert torch.all(c.bn.weight == 1) and torch.all(c.bn.bias == 0)
        expected = math.sqrt(2.0 / c.conv.out_channels)
        assert c.conv.weight.std().item() == pytest.approx(expected, rel=0.35)
    # The margins are those of the loaded teacher's BNs.
    rec = distiller.records['teacher']['feats']
    for margin, bn in zip(distiller.connectors['feats_t'].margins(), rec.norm_layers()):
        torch.testing.assert_close(margin.view(-1), margin_from_bn(bn))


def test_teacher_batch_statistics_leave_running_stats_alone(tiny_teacher):
    distiller = MODELS.build(_ofd_model(tiny_teacher, teacher_norm='batch_stats'))
    before = {k: v.clone() for k, v in distiller.teacher.state_dict().items()}
    distiller.train()
    x = torch.randn(8, 1, 28, 28) * 3 + 1
    distiller.run_teachers(x)
    batch_feats = [f.clone() for f in distiller.records['teacher']['feats'].get()]
    distiller.frozen_teachers['teacher'].norm = 'eval'
    distiller.run_teachers(x)
    eval_feats = distiller.records['teacher']['feats'].get()
    assert not torch.allclose(batch_feats[0], eval_feats[0])
    for key, value in distiller.teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not any(m.training for m in distiller.teacher.modules())


def test_ofd_trains_and_its_margins_survive_save_and_resume(tmp_path, fashion_mnist_root,
                                                             tiny_teacher):
    work_dir = str(tmp_path / 'ofd')
    cfg = runner_cfg(work_dir, fashion_mnist_root, _ofd_model(tiny_teacher), epochs=2,
                     train_samples=96, val_samples=64)
    cfg['train_cfg']['max_epochs'] = 1
    runner = Runner.from_cfg(Config(cfg))
    student_before = {k: v.clone() for k, v in runner.model.student.state_dict().items()}
    margins = [m.clone() for m in runner.model.connectors['feats_t'].margins()]
    runner.train()
    assert any(not torch.equal(v, student_before[k])
               for k, v in runner.model.student.state_dict().items())
    state = safe_torch_load(osp.join(work_dir, 'epoch_1.pth'))['state_dict']
    for i, margin in enumerate(margins):
        torch.testing.assert_close(state[f'connectors.feats_t.margin{i}'], margin)
    # Resume with different margins in the fresh model: the checkpoint's come back.
    cfg2 = runner_cfg(work_dir, fashion_mnist_root, _ofd_model(tiny_teacher), epochs=2,
                      train_samples=96, val_samples=64)
    cfg2['resume'] = True
    runner2 = Runner.from_cfg(Config(cfg2))
    for buffer in runner2.model.connectors['feats_t'].margins():
        buffer.fill_(123.0)
    runner2.train()
    assert runner2.train_loop.epoch == 2
    for got, margin in zip(runner2.model.connectors['feats_t'].margins(), margins):
        torch.testing.assert_close(got, margin)
    assert 'loss_ofd' in open(osp.join(runner2.log_dir, 'vis_data', 'scalars.json')).read()


OFD_CONFIGS = sorted(glob.glob(osp.join(osp.dirname(osp.dirname(__file__)), 'configs', 'ofd',
                                        '*.py')))


@pytest.mark.parametrize('path', OFD_CONFIGS, ids=osp.basename)
def test_every_ofd_config_builds(path):
    cfg = Config.fromfile(path)
    cfg.model.teacher.checkpoint = None  # built untrained: no weights needed here
    size = 64 if cfg.model.dry_run_shape[0] == 3 else cfg.model.dry_run_shape[1]
    cfg.model.dry_run_shape = (cfg.model.dry_run_shape[0], size, size)
    with pytest.warns(UserWarning, match='randomly initialised'):
        distiller = MODELS.build(cfg.model)
    feats_t = distiller.connectors['feats_t']
    assert feats_t.num_inputs == len(distiller.connectors['feats_s'].items) >= 3
