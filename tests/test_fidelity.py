"""docs/fidelity.md: every loss links its section, and every loss of the methods checked there
agrees with its paper's formula, written out again here in float64 on random tensors."""
import importlib
import inspect
import math
import os.path as osp
import pkgutil
import re

import pytest
import torch
import torch.nn.functional as F

import mmkd.losses
from mmkd.connectors import ABF, AuxiliaryClassifier, ReviewKDConnector
from mmkd.distillers import SelfDistiller
from mmkd.distillers.self_distiller import feature_l2_distance, soft_cross_entropy
from mmkd.losses import (
    BaseDistillLoss,
    ChannelWiseDivergence,
    CosineLoss,
    DMLLoss,
    FSPLoss,
    HCLLoss,
    KDLoss,
    MSELoss,
    MultiTeacherKDLoss,
    OFDLoss,
    PixelWiseKDLoss,
    RKDLoss,
    SigmoidKDLoss,
)

from conftest import REPO

FIDELITY = osp.join(REPO, 'docs', 'fidelity.md')
LINK = re.compile(r'^Fidelity: docs/fidelity\.md#([a-z0-9-]+)$', re.M)
TOL = dict(rel=1e-5)  # float32 losses against float64 references


def _all_losses():
    for info in pkgutil.iter_modules(mmkd.losses.__path__):
        importlib.import_module(f'mmkd.losses.{info.name}')
    found, todo = [], [BaseDistillLoss]
    while todo:
        for cls in todo.pop().__subclasses__():
            todo.append(cls)
            if cls.__module__.startswith('mmkd.losses.'):
                found.append(cls)
    return sorted(set(found), key=lambda c: c.__name__)


@pytest.mark.parametrize('cls', _all_losses() + [SelfDistiller, ABF, ReviewKDConnector,
                                                 AuxiliaryClassifier],
                         ids=lambda c: c.__name__)
def test_docstring_links_its_fidelity_section(cls):
    links = LINK.findall(inspect.getdoc(cls) or '')
    assert len(links) == 1, f'{cls.__name__}: one line "Fidelity: docs/fidelity.md#<anchor>"'
    with open(FIDELITY) as f:
        page = f.read()
    assert f'<a id="{links[0]}"></a>' in page, f'docs/fidelity.md has no anchor {links[0]!r}'


def _rand(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _kl(p, log_q, dim=1):
    """sum p (log p - log q) along dim, float64, 0 log 0 = 0."""
    return (torch.xlogy(p, p) - p * log_q).sum(dim)


# ------------------------------------------------------------------ logit losses
def test_kd():
    s, t, tau = _rand(8, 10, seed=1, scale=3), _rand(8, 10, seed=2, scale=3), 4.0
    p_t = torch.softmax(t.double() / tau, 1)
    ref = tau**2 * _kl(p_t, torch.log_softmax(s.double() / tau, 1)).mean()
    assert KDLoss(tau=tau, loss_weight=0.9)(s, t).item() == pytest.approx(0.9 * ref.item(), **TOL)


def test_multi_teacher_arithmetic_and_geometric():
    s = _rand(6, 5, seed=3)
    ts = [_rand(6, 5, seed=4, scale=2), _rand(6, 5, seed=5, scale=2)]
    tau, w = 2.0, torch.tensor([3.0, 1.0], dtype=torch.float64) / 4
    log_q = torch.log_softmax(s.double() / tau, 1)
    probs = [torch.softmax(t.double() / tau, 1) for t in ts]
    arith = w[0] * probs[0] + w[1] * probs[1]
    geo = probs[0]**w[0] * probs[1]**w[1]
    geo = geo / geo.sum(1, keepdim=True)
    for combine, target in (('arithmetic', arith), ('geometric', geo)):
        value = MultiTeacherKDLoss(combine=combine, weights=[3, 1], tau=tau)(s, ts)
        assert value.item() == pytest.approx(tau**2 * _kl(target, log_q).mean().item(), **TOL)


def test_dml_mean_over_peers():
    own, peers, tau = _rand(5, 4, seed=6), [_rand(5, 4, seed=7), _rand(5, 4, seed=8)], 1.0
    log_q = torch.log_softmax(own.double() / tau, 1)
    ref = sum(_kl(torch.softmax(p.double() / tau, 1), log_q).mean() for p in peers) / 2
    assert DMLLoss(tau=tau)(own, peers).item() == pytest.approx(ref.item(), **TOL)


def test_sigmoid_kd_binary_kl_per_anchor():
    s, t, tau = _rand(2, 6, 3, 3, seed=9), _rand(2, 6, 3, 3, seed=10), 2.0
    p, q = torch.sigmoid(t.double() / tau), torch.sigmoid(s.double() / tau)
    kl = p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()
    anchors = 2 * (6 // 3) * 3 * 3  # 3 classes per anchor
    value = SigmoidKDLoss(tau=tau, num_classes=3)(s, t)
    assert value.item() == pytest.approx(tau**2 * kl.sum().item() / anchors, **TOL)


def test_cwd_channel_distributions_over_positions():
    s, t, tau = _rand(2, 3, 4, 5, seed=11), _rand(2, 3, 4, 5, seed=12), 4.0
    log_q = torch.log_softmax(s.double().flatten(2) / tau, 2)
    p = torch.softmax(t.double().flatten(2) / tau, 2)
    ref = tau**2 * _kl(p, log_q, dim=2).sum() / (2 * 3)
    value = ChannelWiseDivergence(tau=tau, loss_weight=3.0)(s, t)
    assert value.item() == pytest.approx(3 * ref.item(), **TOL)


def test_pixel_wise_kd_sum_over_the_batch_divided_by_h_w():
    s, t = _rand(3, 5, 4, 6, seed=13), _rand(3, 5, 4, 6, seed=14)
    kl = _kl(torch.softmax(t.double(), 1), torch.log_softmax(s.double(), 1))  # (N, H, W)
    value = PixelWiseKDLoss(tau=1.0, loss_weight=10.0)(s, t)
    assert value.item() == pytest.approx(10 * kl.sum().item() / (4 * 6), **TOL)
    mean = PixelWiseKDLoss(tau=1.0, normalize='pixels')(s, t)
    assert mean.item() == pytest.approx(kl.mean().item(), **TOL)


# ------------------------------------------------------------------ feature losses
def test_ofd_partial_l2_stage_weights_and_normaliser():
    shapes = [(4, 3, 8, 8), (4, 5, 4, 4), (4, 6, 2, 2)]
    s = [_rand(*sh, seed=20 + i) for i, sh in enumerate(shapes)]
    t = [_rand(*sh, seed=30 + i) for i, sh in enumerate(shapes)]
    ref = 0.0
    for i, (a, b) in enumerate(zip(s, t)):
        a, b = a.double(), b.double()
        mask = ((a > b) | (b > 0)).double()
        ref += 2.0**-(len(s) - 1 - i) * (mask * (a - b)**2).sum()
    value = OFDLoss(normalizer=1000)(s, t)
    assert value.item() == pytest.approx(ref.item() / (4 * 1000), **TOL)


def test_hcl_with_the_pooled_level_and_the_authors_level_rule():
    shapes = [(2, 4, 8, 8), (2, 4, 3, 6), (2, 4, 6, 3), (2, 4, 1, 1)]  # with non-square maps
    s = [_rand(*sh, seed=40 + i) for i, sh in enumerate(shapes)]
    t = [_rand(*sh, seed=50 + i) for i, sh in enumerate(shapes)]
    ref = 0.0
    for a, b in zip(s, t):
        a, b = a.double(), b.double()
        num, den, w = ((a - b)**2).mean(), 1.0, 1.0
        for size in (4, 2, 1):
            if size >= a.shape[-2]:
                continue
            w /= 2
            diff = F.adaptive_avg_pool2d(a, (size, size)) - F.adaptive_avg_pool2d(b, (size, size))
            num, den = num + w * (diff**2).mean(), den + w
        ref += num / den
    assert HCLLoss()(s, t).item() == pytest.approx(ref.item(), **TOL)


def test_fsp_gramians_and_frobenius_distance():
    s = [_rand(3, 2, 8, 8, seed=60), _rand(3, 4, 4, 4, seed=61), _rand(3, 4, 2, 2, seed=62)]
    t = [_rand(3, 2, 8, 8, seed=63), _rand(3, 4, 4, 4, seed=64), _rand(3, 4, 2, 2, seed=65)]

    def gram(f1, f2):
        f1, f2 = f1.double(), f2.double()
        h = min(f1.shape[2], f2.shape[2])
        f1, f2 = F.adaptive_avg_pool2d(f1, h), F.adaptive_avg_pool2d(f2, h)
        return torch.einsum('nihw,njhw->nij', f1, f2) / (h * h)

    ref = sum(((gram(t[i], t[i + 1]) - gram(s[i], s[i + 1]))**2).sum((1, 2)).mean()
              for i in range(2))
    assert FSPLoss()(s, t).item() == pytest.approx(ref.item(), **TOL)


def test_rkd_distance_and_angle():
    s, t = _rand(6, 5, seed=70), _rand(6, 7, seed=71)

    def potentials(x):
        x = x.double()
        d = torch.cdist(x, x)
        dist = d / d[~torch.eye(len(x), dtype=torch.bool)].mean()
        e = x[None, :, :] - x[:, None, :]  # e[j, i] = x_i - x_j
        e = e / e.norm(dim=2, keepdim=True).clamp_min(1e-12)
        return dist, torch.einsum('jic,jkc->jik', e, e)

    (ds, as_), (dt, at) = potentials(s), potentials(t)
    ref = 25 * F.smooth_l1_loss(ds, dt) + 50 * F.smooth_l1_loss(as_, at)
    assert RKDLoss()(s, t).item() == pytest.approx(ref.item(), rel=1e-4)


def test_mse_and_cosine():
    s, t = _rand(4, 3, 5, 5, seed=80), _rand(4, 3, 5, 5, seed=81)
    sq = (s.double() - t.double())**2
    assert MSELoss()(s, t).item() == pytest.approx(sq.mean().item(), **TOL)
    assert MSELoss(reduction='batchmean')(s, t).item() == pytest.approx(sq.sum().item() / 4,
                                                                        **TOL)
    a, b = s.double().flatten(1), t.double().flatten(1)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert CosineLoss()(s, t).item() == pytest.approx((1 - cos).mean().item(), **TOL)


# ------------------------------------------------------------------ BYOT's terms
def test_byot_soft_cross_entropy_and_l2_hint():
    q, qc, tau = _rand(8, 10, seed=90, scale=3), _rand(8, 10, seed=91, scale=3), 3.0
    ref = -(torch.softmax(qc.double() / tau, 1) * torch.log_softmax(q.double() / tau, 1)).sum(1)
    assert soft_cross_entropy(q, qc, tau).item() == pytest.approx(ref.mean().item(), **TOL)
    a, f = _rand(8, 16, seed=92), _rand(8, 16, seed=93)
    dist = math.sqrt(((a.double() - f.double())**2).sum().item())
    assert feature_l2_distance(a, f).item() == pytest.approx(dist, **TOL)
    assert feature_l2_distance(a, f).item() == pytest.approx(torch.dist(a, f).item(), **TOL)
