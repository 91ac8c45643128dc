"""AT, PKT, SP and VID: each loss against its paper's formula written out again in
float64, their invariances, VID's learned variance, the configs, and a real Runner run."""
import glob
import json
import math
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

from mmkd.connectors import GaussianPrediction, VIDRegressor
from mmkd.distillers import load_config
from mmkd.losses import (
    ATLoss,
    PKTLoss,
    ShapeMismatchError,
    SPLoss,
    VIDLoss,
    kl_divergence,
    smoothed_kl_divergence,
)
from mmkd.registry import MODELS

from conftest import REPO, kd_model, runner_cfg

sys.path.insert(0, osp.join(REPO, 'tools', 'model_converters'))
from export_student import export_student  # noqa: E402

RTOL = 1e-5  # the losses compute in fp32; the references in float64


def rel_close(value: torch.Tensor, expected: float, rtol: float = RTOL) -> bool:
    return abs(value.item() - expected) <= rtol * abs(expected)


# ------------------------------------------------------------------ AT
def at_reference(s_feats, t_feats, beta: float) -> float:
    """Eq. 2 as the authors' code computes it: Q = sum_c A_c^2 (the channel sum of the paper;
    the code's mean differs by 1/C, which the normalisation removes), Q / ||Q||_2, squared
    differences averaged over batch and positions, summed over the pairs, times beta."""
    total = 0.0
    for s, t in zip(s_feats, t_feats):
        maps = []
        for f in (s.double(), t.double()):
            q = (f.abs() ** 2).sum(1).reshape(f.shape[0], -1)
            maps.append(q / q.norm(dim=1, keepdim=True))
        total += ((maps[0] - maps[1]) ** 2).sum().item() / maps[0].numel()
    return beta * total


def test_at_matches_the_formula_across_channel_counts():
    torch.manual_seed(0)
    # Student and teacher widths differ at every stage (4/16, 8/32, 16/64).
    s = [torch.randn(6, 4, 8, 8), torch.randn(6, 8, 4, 4), torch.randn(6, 16, 2, 2)]
    t = [torch.randn(6, 16, 8, 8), torch.randn(6, 32, 4, 4), torch.randn(6, 64, 2, 2)]
    loss = ATLoss()  # beta = 1000 by default
    assert rel_close(loss(s, t), at_reference(s, t, 1000.0))
    assert rel_close(ATLoss(loss_weight=2.0)(s[0], t[0]), at_reference(s[:1], t[:1], 2.0))
    # The maps' scale does not matter; the same map on both sides gives zero.
    assert loss(s, [3.0 * f for f in s]).item() == pytest.approx(0.0, abs=1e-6)


def test_at_sends_gradients_to_the_student_only_and_refuses_other_spatial_sizes():
    s = torch.randn(4, 8, 8, 8, requires_grad=True)
    t = torch.randn(4, 32, 8, 8, requires_grad=True)
    ATLoss()(s, t).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None
    with pytest.raises(ShapeMismatchError, match=r'same batch and spatial size.*'
                       r'\(4, 8, 8, 8\).*\(4, 32, 4, 4\)'):
        ATLoss()(torch.randn(4, 8, 8, 8), torch.randn(4, 32, 4, 4))
    with pytest.raises(ShapeMismatchError, match='as many student as teacher'):
        ATLoss()([torch.randn(4, 8, 8, 8)] * 2, [torch.randn(4, 8, 8, 8)])


# ------------------------------------------------------------------ PKT
def pkt_reference(s: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> float:
    """The conditional probabilities of the cosine kernel, written entry by entry."""
    def probs(x):
        x = x.double().reshape(x.shape[0], -1)
        n = x.shape[0]
        norms = [math.sqrt(sum(v * v for v in row.tolist())) + eps for row in x]
        k = [[0.5 * ((x[i] @ x[j]).item() / (norms[i] * norms[j]) + 1) for j in range(n)]
             for i in range(n)]
        return [[k[i][j] / sum(k[i]) for j in range(n)] for i in range(n)]
    p_s, p_t = probs(s), probs(t)
    n = len(p_t)
    return sum(p_t[i][j] * math.log((p_t[i][j] + eps) / (p_s[i][j] + eps))
               for i in range(n) for j in range(n)) / n ** 2


def test_pkt_matches_the_formula():
    torch.manual_seed(1)
    s, t = torch.randn(7, 12), torch.randn(7, 40)  # embeddings of different widths
    assert rel_close(PKTLoss()(s, t), pkt_reference(s, t))
    assert rel_close(PKTLoss(loss_weight=30000.0)(s, t), 30000.0 * pkt_reference(s, t))
    maps_s, maps_t = torch.randn(5, 3, 2, 2), torch.randn(5, 6, 2, 2)  # flattened
    assert rel_close(PKTLoss()(maps_s, maps_t), pkt_reference(maps_s, maps_t))


def test_pkt_ignores_positive_rescaling_and_rotation_and_is_zero_on_the_same_geometry():
    torch.manual_seed(2)
    s, t = torch.randn(8, 16), torch.randn(8, 16)
    loss = PKTLoss()
    base = loss(s, t).item()
    scales = torch.rand(8, 1) * 10 + 0.1  # one positive factor per sample
    q, _ = torch.linalg.qr(torch.randn(16, 16))
    assert loss(s * scales, t).item() == pytest.approx(base, rel=1e-4)
    assert loss(s, t * scales).item() == pytest.approx(base, rel=1e-4)
    assert loss(s @ q, t).item() == pytest.approx(base, rel=1e-4)
    assert loss(3.0 * t @ q, t).item() == pytest.approx(0.0, abs=1e-6)
    # A negative factor flips cosines: not invariant, so the test above could fail.
    assert loss(s * torch.tensor([[-1.0]] + [[1.0]] * 7), t).item() != pytest.approx(base,
                                                                                    rel=1e-3)
    student = s.clone().requires_grad_()
    teacher = t.clone().requires_grad_()
    loss(student, teacher).backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None
    with pytest.raises(ShapeMismatchError, match='same batch size'):
        loss(torch.randn(4, 8), torch.randn(5, 8))


def test_smoothed_kl_is_the_kl_with_eps_inside_the_log():
    torch.manual_seed(3)
    p = torch.softmax(torch.randn(5, 9, dtype=torch.float64), 1)
    q = torch.softmax(torch.randn(5, 9, dtype=torch.float64), 1)
    exact = kl_divergence(p, q.log(), reduction='none')
    assert torch.allclose(smoothed_kl_divergence(p, q, 0.0), exact, rtol=1e-12)
    eps = 1e-3
    by_hand = [sum(p[i, j].item() * math.log((p[i, j].item() + eps) / (q[i, j].item() + eps))
                   for j in range(9)) for i in range(5)]
    assert torch.allclose(smoothed_kl_divergence(p, q, eps),
                          torch.tensor(by_hand, dtype=torch.float64), rtol=1e-12)
    assert smoothed_kl_divergence(p, q, eps, reduction='sum').item() == pytest.approx(
        sum(by_hand), rel=1e-12)
    # A zero probability in q stays finite with eps.
    q0 = torch.tensor([[0.0, 1.0]])
    assert torch.isfinite(smoothed_kl_divergence(torch.tensor([[0.5, 0.5]]), q0, 1e-7)).all()
    with pytest.raises(ValueError, match='eps >= 0'):
        smoothed_kl_divergence(p, q, -1.0)


# ------------------------------------------------------------------ SP
def sp_reference(s: torch.Tensor, t: torch.Tensor, gamma: float) -> float:
    """G = Q Q^T, each row divided by its L2 norm, ||G_T - G_S||_F^2 / b^2."""
    b = s.shape[0]
    grams = []
    for f in (s.double(), t.double()):
        q = f.reshape(b, -1)
        g = q @ q.t()
        grams.append(g / g.norm(dim=1, keepdim=True))
    return gamma * ((grams[1] - grams[0]) ** 2).sum().item() / b ** 2


def test_sp_matches_the_formula_for_features_of_any_shape():
    torch.manual_seed(4)
    s, t = torch.randn(6, 8, 4, 4), torch.randn(6, 32, 2, 2)  # other channels and size
    assert rel_close(SPLoss()(s, t), sp_reference(s, t, 3000.0))  # gamma = 3000 by default
    pairs_s, pairs_t = [s, torch.randn(6, 10)], [t, torch.randn(6, 20)]
    expected = sum(sp_reference(a, b, 1.0) for a, b in zip(pairs_s, pairs_t))
    assert rel_close(SPLoss(loss_weight=1.0)(pairs_s, pairs_t), expected)


def test_sp_ignores_the_scale_of_either_net_and_is_zero_on_the_same_similarities():
    torch.manual_seed(5)
    s, t = torch.relu(torch.randn(8, 16, 3, 3)), torch.relu(torch.randn(8, 64, 3, 3))
    loss = SPLoss()
    base = loss(s, t).item()
    assert loss(7.3 * s, t).item() == pytest.approx(base, rel=1e-5)
    assert loss(s, 0.01 * t).item() == pytest.approx(base, rel=1e-5)
    assert loss(2.0 * t, t).item() == pytest.approx(0.0, abs=1e-5)
    # A change of the relations does change it (the test above could fail).
    assert loss(s + torch.rand_like(s), t).item() != pytest.approx(base, rel=1e-3)
    student = s.clone().requires_grad_()
    teacher = t.clone().requires_grad_()
    loss(student, teacher).backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None
    with pytest.raises(ShapeMismatchError, match='same batch size'):
        loss(torch.randn(4, 8), torch.randn(5, 8))


# ------------------------------------------------------------------ VID
def vid_reference(connector: VIDRegressor, s: torch.Tensor, t: torch.Tensor) -> float:
    """The three 1x1 convs as matrix products, softplus written out, the Gaussian NLL."""
    w = [m.weight.detach().double()[:, :, 0, 0] for m in connector.regressor
         if isinstance(m, torch.nn.Conv2d)]
    x = s.double().permute(0, 2, 3, 1)  # (N, H, W, C)
    h = torch.clamp(x @ w[0].t(), min=0)
    h = torch.clamp(h @ w[1].t(), min=0)
    mu = (h @ w[2].t()).permute(0, 3, 1, 2)
    var = torch.log(1 + torch.exp(connector.alpha.detach().double())) + connector.eps
    var = var.view(1, -1, 1, 1)
    nll = 0.5 * (torch.log(var) + (t.double() - mu) ** 2 / var)
    return nll.mean().item()


def test_vid_regressor_starts_at_the_initial_variance():
    vid = VIDRegressor(8, 16)
    assert torch.allclose(vid.variance(), torch.full((16, ), 5.0), atol=1e-5)
    assert [m.out_channels for m in vid.regressor if isinstance(m, torch.nn.Conv2d)] == [
        16, 16, 16]  # the hidden width is the teacher's, as in the authors' code
    assert all(m.bias is None for m in vid.regressor if isinstance(m, torch.nn.Conv2d))
    assert torch.allclose(VIDRegressor(8, 16, init_variance=0.5).variance(),
                          torch.full((16, ), 0.5), atol=1e-6)
    with pytest.raises(ValueError, match='init_variance > eps'):
        VIDRegressor(8, 16, init_variance=0.0)


def test_vid_loss_is_the_gaussian_nll_of_the_teacher():
    torch.manual_seed(6)
    vids = [VIDRegressor(4, 16), VIDRegressor(8, 32, mid_channels=12)]
    with torch.no_grad():  # variances other than the initial one, one per channel
        for v in vids:
            v.alpha.copy_(torch.randn_like(v.alpha) * 2)
    s = [torch.randn(3, 4, 6, 6), torch.randn(3, 8, 3, 3)]
    t = [torch.randn(3, 16, 6, 6), torch.randn(3, 32, 3, 3)]
    preds = [v(x) for v, x in zip(vids, s)]
    assert isinstance(preds[0], GaussianPrediction) and preds[0].variance.shape == (1, 16, 1, 1)
    expected = sum(vid_reference(v, x, y) for v, x, y in zip(vids, s, t))
    assert rel_close(VIDLoss()(preds, t), expected)
    assert rel_close(VIDLoss(loss_weight=0.5)(preds[1], t[1]),
                     0.5 * vid_reference(vids[1], s[1], t[1]))
    with pytest.raises(ShapeMismatchError, match='shape of its teacher feature'):
        VIDLoss()(preds[0], torch.randn(3, 16, 3, 3))
    with pytest.raises(TypeError, match='VIDRegressor'):
        VIDLoss()(s[0], t[0])  # plain student features: the connector is missing


def test_vid_variance_stays_positive_and_the_connector_learns():
    torch.manual_seed(7)
    vid = VIDRegressor(4, 8)
    with torch.no_grad():
        vid.alpha.fill_(-100.0)  # softplus(-100) underflows to 0: the variance is eps
    assert (vid.variance() > 0).all()
    assert torch.isfinite(VIDLoss()(vid(torch.randn(2, 4, 3, 3)), torch.randn(2, 8, 3, 3)))

    vid = VIDRegressor(4, 8)
    s = torch.randn(16, 4, 5, 5)
    # A teacher that a 1x1 map of the student explains up to noise of variance 0.01.
    t = torch.einsum('oc,nchw->nohw', torch.randn(8, 4), s) + 0.1 * torch.randn(16, 8, 5, 5)
    optimizer = torch.optim.Adam(vid.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        loss = VIDLoss()(vid(s), t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert vid.variance().max().item() < 5.0  # every variance shrank towards the residual's
    assert vid.alpha.grad is not None and vid.alpha.grad.abs().sum() > 0


# ------------------------------------------------------------------ configs
CONFIGS = {
    'at/at_resnet56_resnet8_fashionmnist.py': ('loss_at', 'ATLoss', 1000.0),
    'at/at_resnet56_resnet20_cifar100.py': ('loss_at', 'ATLoss', 1000.0),
    'pkt/pkt_resnet56_resnet8_fashionmnist.py': ('loss_pkt', 'PKTLoss', 30000.0),
    'pkt/pkt_resnet56_resnet20_cifar100.py': ('loss_pkt', 'PKTLoss', 30000.0),
    'sp/sp_resnet56_resnet8_fashionmnist.py': ('loss_sp', 'SPLoss', 3000.0),
    'sp/sp_resnet56_resnet20_cifar100.py': ('loss_sp', 'SPLoss', 3000.0),
    'vid/vid_resnet56_resnet8_fashionmnist.py': ('loss_vid', 'VIDLoss', 1.0),
    'vid/vid_resnet56_resnet20_cifar100.py': ('loss_vid', 'VIDLoss', 1.0),
}


@pytest.mark.parametrize('path', sorted(CONFIGS))
def test_configs_build_and_compute_their_loss(path):
    name, loss_type, weight = CONFIGS[path]
    cfg = load_config(osp.join(REPO, 'configs', path))
    cifar = 'cifar100' in path
    assert cfg.model.student.cfg_path.endswith('resnet20_cifar100.py' if cifar
                                               else 'resnet8_fashionmnist.py')
    if cifar:  # the CRD benchmark's schedule and batch
        assert cfg.train_cfg.max_epochs == 240 and cfg.train_dataloader.batch_size == 64
        assert cfg.param_scheduler[0].milestones == [150, 180, 210]
    else:
        assert cfg.model.teacher.checkpoint == 'work_dirs/resnet56_fashionmnist/epoch_4.pth'
    cfg.model.teacher.checkpoint = None  # a random teacher: the wiring is what is tested
    with pytest.warns(UserWarning), DefaultScope.overwrite_default_scope(cfg.default_scope):
        distiller = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    assert list(distiller.distill_losses) == [name]  # no KD term: -a 0 in RepDistiller
    loss = distiller.distill_losses[name]
    assert type(loss).__name__ == loss_type and loss.loss_weight == weight
    assert distiller.student.head.loss_module.loss_weight == 1.0  # -r 1
    x = torch.randn(4, 3, 32, 32) if cifar else torch.randn(4, 1, 28, 28)
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    distiller.train()
    losses = distiller.loss(x, samples)
    assert torch.isfinite(losses[name]) and losses[name].item() > 0
    if loss_type in ('ATLoss', 'VIDLoss'):  # the three residual-group outputs, after ReLU
        recorder = distiller.student_records.recorders['feats']
        assert not recorder.pre_relu and len(recorder.stage_paths) == 3
    if loss_type == 'VIDLoss':
        assert [c.alpha.numel() for c in distiller.connectors['vid'].items] == [16, 32, 64]


def test_at_config_records_the_stage_outputs(fashion_mnist_root):
    cfg = load_config(osp.join(REPO, 'configs', 'at', 'at_resnet56_resnet8_fashionmnist.py'))
    cfg.model.teacher.checkpoint = None
    with pytest.warns(UserWarning), DefaultScope.overwrite_default_scope(cfg.default_scope):
        distiller = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    x = torch.randn(2, 1, 28, 28)
    backbone = distiller.student.backbone
    with torch.no_grad(), distiller.student_records.recording():
        distiller.student(x, mode='tensor')
        feats = distiller.student_records.recorders['feats'].get()
        out = backbone.stem(x)
        for stage, feat in zip([backbone.layer1, backbone.layer2, backbone.layer3], feats):
            out = stage(out)
            assert torch.equal(feat, out) and feat.min() >= 0


# ------------------------------------------------------------------ a real run
def test_vid_trains_in_a_runner_and_its_connectors_stay_out_of_the_export(
        tmp_path, tiny_teacher, fashion_mnist_root):
    model = kd_model(
        tiny_teacher,
        recorders=dict(feats=dict(type='StageFeatures', pre_relu=False)),
        connectors=dict(vid=dict(type='ConnectorList', connector=dict(type='VIDRegressor'),
                                 input='student.feats', like='teacher.feats')),
        losses=dict(loss_vid=dict(type='VIDLoss', student='vid', teacher='teacher.feats')))
    work_dir = str(tmp_path / 'run')
    cfg = runner_cfg(work_dir, fashion_mnist_root, model, epochs=1, train_samples=64,
                     val_samples=32)
    runner = Runner.from_cfg(Config(cfg))
    distiller = runner.model
    # Student widths (4, 8, 8) -> teacher widths (8, 16, 16): one regressor per stage.
    assert [c.alpha.numel() for c in distiller.connectors['vid'].items] == [8, 16, 16]
    before = {k: v.clone() for k, v in distiller.connectors.state_dict().items()}
    runner.train()
    in_optimizer = {id(p) for group in runner.optim_wrapper.optimizer.param_groups
                    for p in group['params']}
    assert {id(p) for p in distiller.connectors.parameters()} <= in_optimizer
    after = distiller.connectors.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)  # every part trained
    logged = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            logged += [json.loads(line) for line in f]
    assert any('loss_vid' in line and 'loss_task' in line for line in logged)

    src = osp.join(work_dir, 'epoch_1.pth')
    saved = torch.load(src, weights_only=False)['state_dict']
    vid_keys = {k for k in saved if k.startswith('connectors.vid.')}
    assert {f'connectors.vid.items.{i}.alpha' for i in range(3)} <= vid_keys
    assert any(k.endswith('regressor.4.weight') for k in vid_keys)
    dst = str(tmp_path / 'student.pth')
    export_student(src, dst)
    exported = torch.load(dst, weights_only=True)['state_dict']
    assert set(exported) == {k[len('student.'):] for k in saved if k.startswith('student.')}
    assert not any('alpha' in k or 'regressor' in k for k in exported)
