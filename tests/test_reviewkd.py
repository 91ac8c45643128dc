"""Knowledge Review: HCL, ABF, the review order, a DDP run."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from torch import nn

from mmkd.connectors import ABF, ReviewKDConnector
from mmkd.losses import HCLLoss, tensor_list
from mmkd.registry import MODELS

from conftest import REPO, STUDENT_WIDTHS, dist_train, run_failure, runner_cfg, tiny_classifier


def test_hcl_hand_computed_with_skipped_sizes():
    # 2x2 features: 4x4 and 2x2 pooling are not smaller, only 1x1 is kept.
    s = torch.zeros(1, 1, 2, 2)
    t = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    full = (1 + 4 + 9 + 16) / 4          # 7.5
    pooled = 2.5**2                        # means 0 and 2.5
    assert HCLLoss()([s], [t]).item() == pytest.approx((full + 0.5 * pooled) / 1.5)


def _hcl_reference(levels_s, levels_t):
    """HCL from the paper's formula and the authors' level rule, in float64."""
    total = 0.0
    for s, t in zip(levels_s, levels_t):
        s, t = s.double(), t.double()
        h = s.shape[-2]
        terms, weights = [((s - t)**2).mean()], [1.0]
        for k, size in enumerate((4, 2, 1)):
            if size >= h:  # the authors' rule: `if l >= h: continue`
                continue
            pooled = [torch.nn.functional.adaptive_avg_pool2d(x, (size, size)) for x in (s, t)]
            weights.append(0.5**len(weights))
            terms.append(weights[-1] * ((pooled[0] - pooled[1])**2).mean())
        total = total + sum(terms) / sum(weights)
    return total


def test_hcl_matches_the_formula_with_the_pooled_level():
    # The four levels of the authors' CIFAR code: three stages and the pooled 1x1 feature.
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 4, 8, 8), (3, 8, 4, 4), (3, 16, 2, 2), (3, 16, 1, 1)]
    s = [torch.randn(*shape, generator=gen) for shape in shapes]
    t = [torch.randn(*shape, generator=gen) for shape in shapes]
    value = HCLLoss(loss_weight=0.6)(s, t)
    assert value.item() == pytest.approx(0.6 * _hcl_reference(s, t).item(), rel=1e-5)
    # The 1x1 level is its MSE alone (every pooled size is skipped).
    assert HCLLoss()(s[3], t[3]).item() == pytest.approx(
        ((s[3].double() - t[3].double())**2).mean().item(), rel=1e-6)
    # Nested lists (a list reference joining the stage record and the pooled record) flatten.
    assert HCLLoss(loss_weight=0.6)(s, [t[:3], t[3]]).item() == pytest.approx(value.item(),
                                                                             rel=1e-6)


def test_hcl_level_rule_on_non_square_maps_is_the_authors():
    # The authors skip pooled size l when l >= h (the height), whatever the width.
    gen = torch.Generator().manual_seed(1)
    for shape, kept in (((2, 3, 2, 8), 1), ((2, 3, 8, 2), 3), ((2, 3, 3, 5), 2)):
        s, t = torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)
        expected = _hcl_reference([s], [t])
        assert HCLLoss()(s, t).item() == pytest.approx(expected.item(), rel=1e-5), shape
    # 2x8: only 1x1 is kept, so the loss is (MSE + MSE_1x1 / 2) / 1.5, by hand.
    s = torch.zeros(1, 1, 2, 8)
    t = torch.arange(16.0).view(1, 1, 2, 8)
    full = (t**2).mean().item()
    pooled = t.mean().item()**2
    assert HCLLoss()(s, t).item() == pytest.approx((full + 0.5 * pooled) / 1.5)
    # 8x2: 4x4 (the width of 2 repeated), 2x2 and 1x1 are all kept.
    t = torch.arange(16.0).view(1, 1, 8, 2)
    p4 = torch.nn.functional.adaptive_avg_pool2d(t, 4)
    assert p4.shape[-2:] == (4, 4) and torch.equal(p4[..., 0], p4[..., 1])
    p2 = torch.nn.functional.adaptive_avg_pool2d(t, 2)
    by_hand = ((t**2).mean() + 0.5 * (p4**2).mean() + 0.25 * (p2**2).mean()
               + 0.125 * t.mean()**2) / 1.875
    assert HCLLoss()(s.view(1, 1, 8, 2), t).item() == pytest.approx(by_hand.item())


def test_hcl_all_levels_on_8x8_and_sums_stages():
    s = torch.zeros(1, 1, 8, 8)
    t = torch.ones(1, 1, 8, 8)             # every level differs by exactly 1
    assert HCLLoss()(s, t).item() == pytest.approx(1.0)
    t2 = torch.zeros(1, 1, 8, 8)
    t2[..., :4, :] = 2.0                   # full: 2, 4x4: 2, 2x2: 2, 1x1: 1
    expected = (2 + 0.5 * 2 + 0.25 * 2 + 0.125 * 1) / 1.875
    assert HCLLoss(loss_weight=2.0)([s, s], [t, t2]).item() == pytest.approx(
        2.0 * (1.0 + expected))


def _identity_abf(channels: int, fuse: bool) -> ABF:
    abf = ABF(channels, channels, channels, fuse).eval()
    with torch.no_grad():
        abf.reduce[0].weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
        abf.expand[0].weight.zero_()
        abf.expand[0].weight[:, :, 1, 1] = torch.eye(channels)
    return abf


def test_abf_fusion_formula_on_known_inputs():
    abf = _identity_abf(2, fuse=True)
    with torch.no_grad():
        abf.attention[0].weight.zero_()
        abf.attention[0].bias.copy_(torch.tensor([0.0, 2.0]))  # z0 = 0.5, z1 = sigmoid(2)
    x = torch.randn(1, 2, 4, 4)
    residual = torch.randn(1, 2, 2, 2)
    out, fused = abf(x, residual, out_size=(4, 4))
    up = residual.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest x2
    expected = x * 0.5 + up * torch.sigmoid(torch.tensor(2.0))
    torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)  # identity 3x3 + BN


def test_abf_shapes_and_the_deepest_does_not_fuse():
    deepest = ABF(16, 8, 32, fuse=False)
    assert deepest.attention is None
    out, residual = deepest(torch.randn(2, 16, 2, 2), out_size=(4, 4))
    assert out.shape == (2, 32, 4, 4) and residual.shape == (2, 8, 4, 4)
    with pytest.raises(ValueError, match='residual'):
        ABF(16, 8, 32, fuse=True)(torch.randn(2, 16, 2, 2))


def test_review_order_each_output_sees_its_stage_and_deeper_ones():
    connector = ReviewKDConnector(in_channels=[4, 8, 16], out_channels=[8, 16, 32])
    assert connector.mid_channels == 16
    assert [abf.attention is None for abf in connector.abfs] == [False, False, True]
    feats = [torch.randn(2, 4, 8, 8, requires_grad=True),
             torch.randn(2, 8, 4, 4, requires_grad=True),
             torch.randn(2, 16, 2, 2, requires_grad=True)]
    outs = connector(feats)
    assert [tuple(o.shape) for o in outs] == [(2, 8, 8, 8), (2, 16, 4, 4), (2, 32, 2, 2)]
    for i, out in enumerate(outs):
        grads = torch.autograd.grad(out.sum(), feats, allow_unused=True, retain_graph=True)
        reached = [g is not None and g.abs().sum() > 0 for g in grads]
        assert reached == [j >= i for j in range(3)], (i, reached)


def test_pooled_level_fuses_nothing_and_brings_global_context_to_every_level():
    # Levels as the authors' CIFAR code: stages at 8, 4, 2 and the pooled feature at 1x1.
    connector = ReviewKDConnector(in_channels=[4, 8, 16, 16], out_channels=[8, 16, 32, 32])
    assert connector.num_levels == 4 and connector.mid_channels == 16
    assert [abf.attention is None for abf in connector.abfs] == [False, False, False, True]
    feats = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    pooled = feats[-1].mean((2, 3), keepdim=True).requires_grad_()
    outs = connector([feats, pooled])  # nested: a list reference of [stages, pooled]
    assert [tuple(o.shape) for o in outs] == [(2, 8, 8, 8), (2, 16, 4, 4), (2, 32, 2, 2),
                                              (2, 32, 1, 1)]
    for out in outs:  # the pooled level's residual reaches every output
        grad, = torch.autograd.grad((out * torch.randn_like(out)).sum(), pooled,
                                    retain_graph=True)
        assert grad.abs().sum() > 0


def test_connector_infers_channels_and_size_ratios():
    cfg = ReviewKDConnector.infer_config(
        {}, [torch.zeros(1, 4, 8, 8), torch.zeros(1, 8, 4, 4)],
        [torch.zeros(1, 6, 16, 16), torch.zeros(1, 12, 4, 4)])
    assert cfg == dict(in_channels=[4, 8], out_channels=[6, 12], scales=[2.0, 1.0])
    outs = MODELS.build(dict(type='ReviewKDConnector', **cfg))(
        [torch.zeros(1, 4, 10, 10), torch.zeros(1, 8, 5, 5)])
    assert [o.shape[-1] for o in outs] == [20, 5]


def _reviewkd_model(trained: dict) -> dict:
    return dict(
        type='SingleTeacherDistiller',
        student=tiny_classifier(depth=8, widths=STUDENT_WIDTHS),
        teacher=dict(trained['model'], checkpoint=trained['checkpoint']),
        recorders=dict(pooled=dict(type='ModuleOutputs', source='neck', item=-1, as_map=True)),
        student_recorders=dict(feats=dict(type='StageFeatures', pre_relu=False)),
        teacher_recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
        connectors=dict(review=dict(type='ReviewKDConnector',
                                    input=['student.feats', 'student.pooled'],
                                    like=['teacher.feats', 'teacher.pooled'])),
        losses=dict(loss_review=dict(type='HCLLoss', student='review',
                                     teacher=['teacher.feats', 'teacher.pooled'],
                                     loss_weight=0.6)),
        dry_run_shape=(1, 28, 28))


def test_reviewkd_trains_with_ddp_and_warms_up(tmp_path, fashion_mnist_root, tiny_teacher):
    work_dir = tmp_path / 'reviewkd'
    cfg = runner_cfg(str(work_dir), fashion_mnist_root, _reviewkd_model(tiny_teacher),
                     epochs=2, train_samples=128, val_samples=64)
    cfg['custom_hooks'] = [dict(type='DistillLossScheduleHook', warmup=2,
                                losses=['loss_review'])]
    cfg['model_wrapper_cfg'] = dict(type='MMDistributedDataParallel',
                                    find_unused_parameters=False)
    cfg['log_level'] = 'INFO'
    result = dist_train(cfg, str(tmp_path / 'reviewkd_ddp.py'))
    assert result.returncode == 0, run_failure(result)
    assert osp.isfile(work_dir / 'epoch_2.pth')
    scalars = glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json'))
    lines = [json.loads(line) for line in open(scalars[0])]
    steps = [line for line in lines if 'loss_review' in line]
    scales = [line['distill_scale'] for line in steps]
    # 2 ranks x 32 per batch over 128 images: 2 iterations per epoch, 4 in all.
    assert scales == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(line['loss_review'] > 0 for line in steps)
    assert 'Distributed training: True' in open(glob.glob(str(work_dir / '*' / '*.log'))[0]).read()


def test_pooled_record_is_the_neck_output_as_a_1x1_map(tiny_teacher):
    from mmkd.recorders import ModuleOutputs
    net = MODELS.build(tiny_classifier(depth=8, widths=STUDENT_WIDTHS)).eval()
    rec = ModuleOutputs('neck', item=-1, as_map=True).attach(net)
    x = torch.randn(3, 1, 28, 28)
    with rec, torch.no_grad():
        net(x, mode='tensor')
        feats = net.backbone(x)
    assert rec.get().shape == (3, STUDENT_WIDTHS[-1], 1, 1)
    torch.testing.assert_close(rec.get(), feats[-1].mean((2, 3), keepdim=True))
    wrong = ModuleOutputs('backbone', item=-1, as_map=True).attach(net)
    with wrong, torch.no_grad():
        net(x, mode='tensor')
    with pytest.raises(ValueError, match=r'as_map=True.*\(3, 8, 7, 7\)'):
        wrong.get()


def test_every_reviewkd_config_builds_with_the_pooled_level():
    for path in sorted(glob.glob(osp.join(REPO, 'configs', 'reviewkd', '*.py'))):
        cfg = Config.fromfile(path)
        cfg.model.teacher.checkpoint = None
        channels = cfg.model.dry_run_shape[0]
        cfg.model.dry_run_shape = (channels, 32, 32) if channels == 3 else cfg.model.dry_run_shape
        with pytest.warns(UserWarning, match='randomly initialised'):
            distiller = MODELS.build(cfg.model)
        review = distiller.connectors['review']
        stages = len(distiller.records['student']['feats'].stage_paths)
        # One more level than the stages: the pooled feature, on both nets.
        assert isinstance(review, nn.Module) and review.num_levels == stages + 1, path
        assert review.abfs[-1].attention is None and review.abfs[-2].attention is not None
        # What HCL receives in a step: the 1x1 pooled level last, on both sides.
        seen = {}
        hcl = distiller.distill_losses['loss_review']
        handle = hcl.register_forward_pre_hook(
            lambda _m, _a, kwargs: seen.update(kwargs), with_kwargs=True)
        distiller.eval()
        with torch.no_grad():
            distiller._forward_nets(torch.randn(2, *cfg.model.dry_run_shape), None, 'tensor',
                                    run_teachers=True)
            distiller.compute_distill_losses(None)
        handle.remove()
        student, teacher = seen['student'], tensor_list(seen['teacher'])
        assert len(student) == len(teacher) == stages + 1, path
        assert student[-1].shape[-2:] == teacher[-1].shape[-2:] == (1, 1), path
        assert teacher[-1].shape[1] == distiller.teacher.head.fc.in_features, path
