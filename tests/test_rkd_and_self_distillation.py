"""RKDLoss on hand-computed examples; SelfDistiller (BYOT) in a real Runner and at export."""
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

from mmkd.distillers import DistillerConfigError, load_config
from mmkd.losses import RKDLoss, ShapeMismatchError
from mmkd.registry import MODELS

from conftest import REPO, STUDENT_WIDTHS, runner_cfg, tiny_classifier

sys.path.insert(0, osp.join(REPO, 'tools', 'model_converters'))
from export_student import export_student  # noqa: E402

# A 3-4-5 right triangle (teacher) and an isosceles right triangle (student).
TEACHER = torch.tensor([[0., 0.], [3., 0.], [0., 4.]])
STUDENT = torch.tensor([[0., 0.], [1., 0.], [0., 1.]])


def huber(d: float) -> float:
    return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5


def test_rkd_distance_on_a_hand_computed_example():
    # Teacher distances 3, 4, 5: mean over the 6 ordered pairs is 4, so psi = .75, 1, 1.25.
    # Student distances 1, 1, sqrt(2): mean (2 + sqrt(2)) / 3.
    mu_s = (2 + math.sqrt(2)) / 3
    pairs = [(1 / mu_s, 0.75), (1 / mu_s, 1.0), (math.sqrt(2) / mu_s, 1.25)]
    # Each unordered pair appears twice among the 9 (i, j) entries; the diagonal adds 0.
    expected = 2 * sum(huber(s - t) for s, t in pairs) / 9
    loss = RKDLoss(distance_weight=1, angle_weight=0)
    assert loss(STUDENT, TEACHER).item() == pytest.approx(expected, rel=1e-5)
    # Large differences fall on the linear part of the Huber loss.
    far = torch.tensor([[0., 0.], [1., 0.], [100., 0.]])  # psi: 1/34, 3, 2.97 (x 2 each)
    mu = (1 + 100 + 99) / 3
    psi_far = [1 / mu, 100 / mu, 99 / mu]
    psi_t = [0.75, 1.0, 1.25]
    expected_far = 2 * sum(huber(a - b) for a, b in zip(psi_far, psi_t)) / 9
    assert loss(far, TEACHER).item() == pytest.approx(expected_far, rel=1e-5)


def test_rkd_angle_on_a_hand_computed_example():
    # Cosines at each vertex: teacher 0 (right angle at t0), 3/5 at t1, 4/5 at t2; student
    # 0, 1/sqrt(2), 1/sqrt(2). Per vertex j, the pairs (i, k) and (k, i) with i != k carry
    # the angle; i == k gives cosine 1 on both nets; i == j or k == j gives 0. 27 entries.
    c = 1 / math.sqrt(2)
    expected = 2 * (huber(0.0) + huber(c - 0.6) + huber(c - 0.8)) / 27
    loss = RKDLoss(distance_weight=0, angle_weight=1)
    assert loss(STUDENT, TEACHER).item() == pytest.approx(expected, rel=1e-5)
    both = RKDLoss(distance_weight=25, angle_weight=50, loss_weight=0.5)(STUDENT, TEACHER)
    distance = RKDLoss(distance_weight=1, angle_weight=0)(STUDENT, TEACHER)
    assert both.item() == pytest.approx(0.5 * (25 * distance.item() + 50 * expected), rel=1e-5)


def test_rkd_ignores_scale_rotation_shift_and_embedding_size():
    teacher = torch.randn(8, 5)
    q, _ = torch.linalg.qr(torch.randn(5, 5))
    student = 3.0 * teacher @ q + 7.0  # same relations, other embedding
    wider = torch.cat([teacher, torch.zeros(8, 3)], dim=1)  # 8-d: the relations are the same
    loss = RKDLoss()
    assert loss(student, teacher).item() == pytest.approx(0.0, abs=1e-5)
    assert loss(wider, teacher).item() == pytest.approx(0.0, abs=1e-5)
    # Feature maps are flattened; the gradient reaches the student only.
    s = torch.randn(6, 4, 2, 2, requires_grad=True)
    t = torch.randn(6, 16, requires_grad=True)
    loss(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def test_rkd_refuses_batches_of_different_sizes():
    with pytest.raises(ShapeMismatchError, match='same batch size'):
        RKDLoss()(torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match='not both zero'):
        RKDLoss(distance_weight=0, angle_weight=0)


def test_rkd_config_builds():
    cfg = load_config(osp.join(REPO, 'configs', 'rkd', 'rkd_kd_resnet56_resnet8_fashionmnist.py'))
    assert cfg.model.teacher.checkpoint == 'work_dirs/resnet56_fashionmnist/epoch_4.pth'
    cfg.model.teacher.checkpoint = None  # a random teacher: the wiring is what is tested
    with pytest.warns(UserWarning), DefaultScope.overwrite_default_scope(cfg.default_scope):
        distiller = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    assert list(distiller.distill_losses) == ['loss_kd', 'loss_rkd']
    x = torch.randn(4, 1, 28, 28)
    with distiller.student_records.recording():
        distiller.student(x, mode='tensor')
    assert distiller.student_records.recorders['emb'].get().shape == (4, 64)


# ------------------------------------------------------------ self-distillation
def byot_model(**overrides) -> dict:
    model = dict(type='SelfDistiller', student=tiny_classifier(depth=8, widths=STUDENT_WIDTHS),
                 aux_sources=dict(layer1='backbone.layer1', layer2='backbone.layer2'),
                 tau=3, kd_weight=0.3, hint_weight=0.03, dry_run_shape=(1, 28, 28))
    model.update(overrides)
    return model


def _byot_reference(aux_logits, deepest_logits, adapted, deepest_feature, labels, tau=3.0,
                    alpha=0.3, lam=0.03):
    """The terms of the authors' train.py, written out again in float64."""
    q, t = aux_logits.double(), deepest_logits.double()
    ce = torch.nn.functional.cross_entropy(q, labels)
    soft_ce = -(torch.softmax(t / tau, 1) * torch.log_softmax(q / tau, 1)).sum(1).mean()
    hint = ((adapted.double() - deepest_feature.double())**2).sum().sqrt()  # torch.dist
    return (1 - alpha) * ce, alpha * soft_ce, lam * hint


def test_byot_loss_terms_follow_the_authors_code():
    model = MODELS.build(byot_model())
    # Widths (4, 4, 8, 8): layer1 (4 ch, 28x28) needs two stride-2 convs to reach the
    # deepest feature (8 ch, 7x7), layer2 (8 ch, 14x14) one.
    assert [len(model.aux_heads[n].bottleneck) // 3 for n in ('layer1', 'layer2')] == [2, 1]
    # The hint on every classifier but the one next to the deepest, through a Linear 8 -> 8.
    assert list(model.hint_adapters) == ['layer1']
    assert isinstance(model.hint_adapters['layer1'], torch.nn.Linear)
    assert model.hint_adapters['layer1'].weight.shape == (8, 8)
    x = torch.randn(6, 1, 28, 28)
    labels = [3, 1, 4, 1, 5, 9]
    samples = [DataSample().set_gt_label(i) for i in labels]
    losses = model(x, samples, mode='loss')
    assert set(losses) == {'loss_task', 'loss_layer1_ce', 'loss_layer1_kd', 'loss_layer1_hint',
                           'loss_layer2_ce', 'loss_layer2_kd'}
    # Recompute every term from the student's features and the heads.
    with torch.no_grad():
        feats = [model.student.backbone.stem(x)]
        for stage in model.student.backbone.stages():
            feats.append(stage(feats[-1]))
        deepest_logits = model.student(x, mode='tensor')
        deepest_feature = feats[3].mean((2, 3))  # what the neck hands the deepest fc
        for name, feat in (('layer1', feats[1]), ('layer2', feats[2])):
            hint_feat, logits = model.aux_heads[name](feat)
            adapted = (model.hint_adapters[name](hint_feat.mean((2, 3))) if name == 'layer1'
                       else hint_feat.mean((2, 3)))
            ce, kd, hint = _byot_reference(logits, deepest_logits, adapted, deepest_feature,
                                           torch.tensor(labels))
            assert losses[f'loss_{name}_ce'].item() == pytest.approx(ce.item(), rel=1e-4)
            assert losses[f'loss_{name}_kd'].item() == pytest.approx(kd.item(), rel=1e-4)
            if name == 'layer1':
                assert losses['loss_layer1_hint'].item() == pytest.approx(hint.item(), rel=1e-4)
    # The deepest classifier is the teacher: auxiliary terms do not move it.
    model.zero_grad()
    (losses['loss_layer1_kd'] + losses['loss_layer1_hint']).backward()
    assert model.student.head.fc.weight.grad is None
    assert model.student.backbone.layer3[0].conv1.weight.grad is None
    assert model.aux_heads['layer1'].fc.weight.grad is not None
    assert model.hint_adapters['layer1'].weight.grad.abs().sum() > 0
    assert model.student.backbone.layer1[0].conv1.weight.grad is not None


def test_byot_kd_forms_differ_by_tau_squared_and_the_target_entropy():
    # kd_loss='kl_tau2' (Hinton's KD, mmkd before issue #19) against the authors' soft CE:
    # tau^2 * (CE - H(target)), so the same gradient times tau^2 = 9.
    authors = MODELS.build(byot_model())
    hinton = MODELS.build(byot_model(kd_loss='kl_tau2'))
    hinton.load_state_dict(authors.state_dict())
    x = torch.randn(4, 1, 28, 28)
    terms = {}
    for name, model in (('authors', authors), ('hinton', hinton)):
        model.eval()
        with torch.no_grad():
            model._forward_nets(x, None, 'tensor', run_teachers=False)
            terms[name] = model.compute_distill_losses(None)
            deepest = model.student_records['byot_logits'].get().double()
        model._reset_records()
    target = torch.softmax(deepest / 3, 1)
    entropy = -(target * target.log()).sum(1).mean()
    for layer in ('layer1', 'layer2'):
        soft_ce = terms['authors'][f'loss_{layer}_kd'].double() / 0.3
        kl_tau2 = terms['hinton'][f'loss_{layer}_kd'].double() / 0.3
        assert kl_tau2.item() == pytest.approx(9 * (soft_ce - entropy).item(), rel=1e-4)


# A student that plain mmpretrain builds (no mmkd component): ResNet-18 at widths 4..32.
PLAIN_STUDENT = dict(
    _scope_='mmpretrain', type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, in_channels=1, stem_channels=4,
                  base_channels=4),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=32))


def test_byot_trains_in_a_runner_and_exports_a_plain_student(tmp_path, fashion_mnist_root):
    model = byot_model(student=PLAIN_STUDENT,
                       aux_sources=dict(layer1='backbone.layer1', layer3='backbone.layer3'))
    cfg = runner_cfg(str(tmp_path / 'run'), fashion_mnist_root, model, epochs=1,
                     train_samples=96, val_samples=32)
    runner = Runner.from_cfg(Config(cfg))
    distiller = runner.model
    # layer1 (28x28) -> 4x4 in three stride-2 convs; layer3 (7x7) -> 4x4 in one.
    assert [len(h.bottleneck) // 3 for h in distiller.aux_heads.values()] == [3, 1]
    heads_before = {k: v.clone() for k, v in distiller.aux_heads.state_dict().items()}
    runner.train()
    in_optimizer = {id(p) for group in runner.optim_wrapper.optimizer.param_groups
                    for p in group['params']}
    assert {id(p) for p in distiller.aux_heads.parameters()} <= in_optimizer
    assert any(not torch.equal(v, distiller.aux_heads.state_dict()[k])
               for k, v in heads_before.items() if v.is_floating_point())
    logged = []
    for path in glob.glob(osp.join(str(tmp_path / 'run'), '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            logged += [json.loads(line) for line in f]
    # The hint: on layer1's classifier, not on layer3's (the one next to the deepest).
    assert any('loss_layer1_kd' in line and 'loss_layer1_hint' in line for line in logged)
    assert not any('loss_layer3_hint' in line for line in logged)
    assert {id(p) for p in distiller.hint_adapters.parameters()} <= in_optimizer
    assert any('accuracy/top1' in line for line in logged)  # the student's own head
    every = distiller.predict_all(torch.randn(2, 1, 28, 28))
    assert {k: tuple(v.shape) for k, v in every.items()} == {
        'layer1': (2, 10), 'layer3': (2, 10), 'deepest': (2, 10)}

    src = osp.join(str(tmp_path / 'run'), 'epoch_1.pth')
    saved = torch.load(src, weights_only=False)['state_dict']
    assert any(k.startswith('aux_heads.') for k in saved)
    assert any(k.startswith('hint_adapters.') for k in saved)
    dst = str(tmp_path / 'student.pth')
    export_student(src, dst)  # the function behind tools/model_converters/export_student.py
    exported = torch.load(dst, weights_only=True)['state_dict']
    assert set(exported) == {k[len('student.'):] for k in saved if k.startswith('student.')}
    x = torch.randn(3, 1, 28, 28)
    torch.save(x, tmp_path / 'x.pth')
    expected = distiller.eval()(x, mode='tensor')
    # A fresh interpreter that never imports mmkd loads it strictly into plain mmpretrain.
    code = textwrap.dedent(f"""
        import sys, torch
        from mmengine.runner import load_checkpoint
        from mmengine.registry import init_default_scope
        from mmpretrain.registry import MODELS
        init_default_scope('mmpretrain')
        cfg = {{k: v for k, v in {PLAIN_STUDENT!r}.items() if k != '_scope_'}}
        net = MODELS.build(cfg).eval()
        load_checkpoint(net, {dst!r}, map_location='cpu', strict=True)
        assert 'mmkd' not in sys.modules, 'mmkd was imported'
        with torch.no_grad():
            torch.save(net(torch.load({str(tmp_path / 'x.pth')!r}), mode='tensor'),
                       {str(tmp_path / 'out.pth')!r})
    """)
    subprocess.run([sys.executable, '-c', code], check=True, cwd=str(tmp_path),
                   env=dict(os.environ, PYTHONPATH=''))
    assert torch.allclose(torch.load(tmp_path / 'out.pth'), expected, atol=1e-6)


@pytest.mark.parametrize('overrides, message', [
    (dict(aux_sources=None), 'needs aux_sources'),
    (dict(aux_sources=dict(stem='backbone.stem.0'), deepest='backbone.layer3',
          aux_head=dict(type='AuxiliaryClassifier', num_downsamples=1)),
     r'bottleneck gives \(8, 14, 14\) but the deepest feature is \(8, 7, 7\)'),
    (dict(aux_sources=dict(pooled='neck')), 'must be a 4-d tensor'),
    (dict(hint_on=['layer3']), r"hint_on names \['layer3'\]"),
    (dict(kd_loss='kl'), 'kd_loss must be one of'),
])
def test_bad_self_distillation_configs_are_named(overrides, message):
    with pytest.raises(DistillerConfigError, match=message):
        MODELS.build(byot_model(**overrides))


def test_byot_config_builds():
    cfg = load_config(osp.join(REPO, 'configs', 'self_distillation',
                               'byot_resnet8_fashionmnist.py'))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        distiller = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    assert distiller.student.backbone.depth == 8
    assert list(distiller.aux_heads) == ['layer1', 'layer2']
    # ResNet-8 widths (16, 16, 32, 64): both heads end at the deepest 64 channels.
    assert [h.fc.in_features for h in distiller.aux_heads.values()] == [64, 64]
    # The authors' terms: soft CE without tau^2, hint on layer1 only (Linear 64 -> 64).
    assert (distiller.kd_loss, distiller.tau, distiller.kd_weight, distiller.hint_weight,
            distiller.ce_weight) == ('soft_ce', 3, 0.3, 0.03, pytest.approx(0.7))
    assert list(distiller.hint_adapters) == ['layer1']
    assert distiller.hint_adapters['layer1'].weight.shape == (64, 64)
