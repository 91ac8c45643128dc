"""Logit methods: DKD, DIST and logit standardisation, against float64 references
written from the papers' formulas, plus a DKD run in a real Runner."""
import glob
import json
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

from mmkd.losses import (
    DISTLoss,
    DKDLoss,
    KDLoss,
    MultiTeacherKDLoss,
    ShapeMismatchError,
    standardize_logits,
)
from mmkd.registry import MODELS

from conftest import REPO, kd_model, runner_cfg

METHOD_DIRS = ('dkd', 'dist', 'logit_standardization')


# ---------------------------------------------------------------- float64 references
def _softmax(z: np.ndarray, tau: float) -> np.ndarray:
    z = z / tau
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _kl_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) of each row, with 0 log 0 = 0."""
    with np.errstate(divide='ignore', invalid='ignore'):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(1)


def _zscore(z: np.ndarray) -> np.ndarray:
    """The paper's Z-score with the authors' unbiased std and epsilon 1e-7."""
    return (z - z.mean(1, keepdims=True)) / (z.std(1, ddof=1, keepdims=True) + 1e-7)


def _kd_reference(s: np.ndarray, t: np.ndarray, tau: float) -> float:
    return float(_kl_rows(_softmax(t, tau), _softmax(s, tau)).mean() * tau**2)


def _dkd_reference(s: np.ndarray, t: np.ndarray, y: np.ndarray, tau: float):
    """Per-sample TCKD and NCKD (times tau^2) from the paper's definitions:
    b = (p_y, 1 - p_y) and p_hat_i = p_i / (1 - p_y) over i != y."""
    rows = np.arange(len(y))
    p_s, p_t = _softmax(s, tau), _softmax(t, tau)
    b_s = np.stack([p_s[rows, y], 1 - p_s[rows, y]], 1)
    b_t = np.stack([p_t[rows, y], 1 - p_t[rows, y]], 1)
    keep = np.ones_like(p_s, dtype=bool)
    keep[rows, y] = False
    hat_s = p_s[keep].reshape(len(y), -1) / b_s[:, 1:]
    hat_t = p_t[keep].reshape(len(y), -1) / b_t[:, 1:]
    return _kl_rows(b_t, b_s) * tau**2, _kl_rows(hat_t, hat_s) * tau**2


def _dist_reference(s: np.ndarray, t: np.ndarray, tau: float, beta: float, gamma: float):
    y_s, y_t = _softmax(s, tau), _softmax(t, tau)
    inter = 1 - np.mean([np.corrcoef(y_s[i], y_t[i])[0, 1] for i in range(len(y_s))])
    intra = 1 - np.mean([np.corrcoef(y_s[:, j], y_t[:, j])[0, 1] for j in range(y_s.shape[1])])
    return inter * tau**2, intra * tau**2, tau**2 * (beta * inter + gamma * intra)


def _logits(n=16, c=10, scale=3.0, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, c)) * scale
    t = rng.normal(size=(n, c)) * scale
    y = rng.integers(0, c, size=n)
    return s, t, y


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).float()


def _samples(y: np.ndarray) -> list:
    return [DataSample().set_gt_label(int(v)) for v in y]


# ---------------------------------------------------------------- DKD
@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_dkd_terms_match_the_papers_definitions(tau):
    s, t, y = _logits(n=32, c=100, seed=1)
    tckd_ref, nckd_ref = _dkd_reference(s, t, y, tau)
    tckd, nckd = DKDLoss(tau=tau).decoupled(_t(s), _t(t), torch.from_numpy(y))
    assert tckd.item() == pytest.approx(tckd_ref.mean(), rel=1e-5, abs=1e-7)
    assert nckd.item() == pytest.approx(nckd_ref.mean(), rel=1e-5, abs=1e-7)
    loss = DKDLoss(alpha=1.5, beta=8.0, tau=tau, loss_weight=0.5)
    total = loss(_t(s), _t(t), _samples(y))
    expected = 0.5 * (1.5 * tckd_ref.mean() + 8.0 * nckd_ref.mean())
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_dkd_against_the_authors_masked_nckd_and_kd_decomposition():
    """NCKD by the authors' device (the target's tempered logit minus 1000),
    and the paper's Eq. (1): KD = TCKD + (1 - p^T_y) NCKD, sample by sample."""
    s, t, y = _logits(n=8, c=10, seed=2)
    tau = 4.0
    mask = np.zeros_like(s)
    mask[np.arange(len(y)), y] = 1.0
    masked = _kl_rows(_softmax(t - 1000 * tau * mask, tau), _softmax(s - 1000 * tau * mask, tau))
    loss = DKDLoss(tau=tau)
    _, nckd = loss.decoupled(_t(s), _t(t), torch.from_numpy(y))
    assert nckd.item() == pytest.approx(masked.mean() * tau**2, rel=1e-5)
    for i in range(len(y)):
        s_i, t_i, y_i = _t(s[i:i + 1]), _t(t[i:i + 1]), torch.from_numpy(y[i:i + 1])
        tckd_i, nckd_i = loss.decoupled(s_i, t_i, y_i)
        p_t = _softmax(t[i:i + 1], tau)[0, y[i]]
        kd_i = KDLoss(tau=tau)(s_i, t_i)
        assert kd_i.item() == pytest.approx((tckd_i + (1 - p_t) * nckd_i).item(), rel=1e-4)


def test_dkd_terms_are_non_negative_and_zero_when_student_equals_teacher():
    loss = DKDLoss(tau=4.0)
    for seed in range(5):
        s, t, y = _logits(n=16, c=10, scale=10.0, seed=seed)
        for student in (_t(s), _t(t) + 1e-6 * torch.randn(16, 10)):
            tckd, nckd = loss.decoupled(student, _t(t), torch.from_numpy(y))
            assert tckd.item() >= 0 and nckd.item() >= 0
    tckd, nckd = loss.decoupled(_t(t), _t(t), torch.from_numpy(y))
    assert tckd.item() == pytest.approx(0, abs=1e-6) and nckd.item() == pytest.approx(0, abs=1e-6)


def test_dkd_saturated_target_stays_finite_and_nckd_gives_the_target_no_gradient():
    s, t, y = _logits(n=8, c=10, seed=3)
    s[np.arange(8), y] += 200.0  # p_y = 1 to float precision: log(1 - p_y) must not be -inf
    student = _t(s).requires_grad_()
    tckd, nckd = DKDLoss(tau=1.0).decoupled(student, _t(t), torch.from_numpy(y))
    assert math.isfinite(tckd.item()) and math.isfinite(nckd.item())
    (grad, ) = torch.autograd.grad(nckd, student)
    assert torch.isfinite(grad).all()
    assert torch.equal(grad[torch.arange(8), torch.from_numpy(y)], torch.zeros(8))
    assert grad.abs().sum() > 0


def test_dkd_labels_from_data_samples_and_the_dry_run_stand_in():
    s, t, y = _logits(n=6, c=10, seed=4)
    loss = DKDLoss(beta=8.0)
    with_labels = loss(_t(s), _t(t), _samples(y))
    tckd, nckd = loss.decoupled(_t(s), _t(t), torch.from_numpy(y))
    assert with_labels.item() == pytest.approx((tckd + 8 * nckd).item(), rel=1e-6)
    # Without data samples (the build-time dry run) the teacher's argmax stands in.
    stand_in = loss(_t(s), _t(t), None)
    tckd, nckd = loss.decoupled(_t(s), _t(t), _t(t).argmax(1))
    assert stand_in.item() == pytest.approx((tckd + 8 * nckd).item(), rel=1e-6)
    assert y.tolist() != _t(t).argmax(1).tolist()  # the two cases really differ here
    with pytest.raises(ValueError, match='data samples for'):
        loss(_t(s), _t(t), _samples(y[:5]))
    with pytest.raises(ValueError, match='one ground-truth class'):
        loss(_t(s), _t(t), [DataSample() for _ in range(6)])
    with pytest.raises(ValueError, match='labels must lie'):
        loss(_t(s), _t(t), _samples(np.full(6, 10)))
    with pytest.raises(ShapeMismatchError):
        loss(torch.randn(2, 10, 4, 4), torch.randn(2, 10, 4, 4), None)


# ---------------------------------------------------------------- DIST
@pytest.mark.parametrize('tau,beta,gamma', [(1.0, 1.0, 1.0), (4.0, 2.0, 0.5)])
def test_dist_relations_match_pearson_correlations(tau, beta, gamma):
    s, t, _ = _logits(n=32, c=100, seed=5)
    inter_ref, intra_ref, total_ref = _dist_reference(s, t, tau, beta, gamma)
    loss = DISTLoss(beta=beta, gamma=gamma, tau=tau, loss_weight=2.0)
    inter, intra = loss.relations(_t(s), _t(t))
    assert inter.item() == pytest.approx(inter_ref, rel=1e-5)
    assert intra.item() == pytest.approx(intra_ref, rel=1e-5)
    assert loss(_t(s), _t(t)).item() == pytest.approx(2.0 * total_ref, rel=1e-5)


def test_dist_is_bounded_zero_for_equal_nets_and_compares_maps_per_position():
    s, t, _ = _logits(n=16, c=10, seed=6)
    loss = DISTLoss(tau=4.0)
    inter, intra = loss.relations(_t(s), _t(t))
    assert 0 <= inter.item() <= 2 * 16 and 0 <= intra.item() <= 2 * 16
    inter, intra = loss.relations(_t(t), _t(t))
    assert inter.item() == pytest.approx(0, abs=1e-5) and intra.item() == pytest.approx(0, abs=1e-5)
    maps_s, maps_t = torch.randn(2, 10, 3, 4), torch.randn(2, 10, 3, 4)
    rows_s = maps_s.permute(0, 2, 3, 1).reshape(-1, 10)
    rows_t = maps_t.permute(0, 2, 3, 1).reshape(-1, 10)
    assert loss(maps_s, maps_t).item() == pytest.approx(loss(rows_s, rows_t).item(), rel=1e-6)


# ---------------------------------------------------------------- logit standardisation
def test_standardize_logits_is_the_z_score_with_the_authors_epsilon():
    s, _, _ = _logits(n=8, c=10, scale=5.0, seed=7)
    z = standardize_logits(_t(s) + 3.0)
    np.testing.assert_allclose(z.numpy(), _zscore(s + 3.0), rtol=1e-5, atol=1e-5)
    assert torch.allclose(z.mean(1), torch.zeros(8), atol=1e-5)
    assert torch.allclose(z.std(1), torch.ones(8), atol=1e-5)
    # Invariant to shift and positive scale of the logits; constant rows give zeros.
    assert torch.allclose(standardize_logits(_t(s) * 7 - 2), z, atol=1e-5)
    assert torch.equal(standardize_logits(torch.full((2, 5), 3.0)), torch.zeros(2, 5))
    assert standardize_logits(torch.randn(4, 10, dtype=torch.bfloat16)).dtype == torch.float32


@pytest.mark.parametrize('tau', [2.0, 4.0])
def test_kd_with_standardisation_is_kd_on_standardised_logits(tau):
    s, t, _ = _logits(n=16, c=100, seed=8)
    value = KDLoss(tau=tau, loss_weight=9.0, logit_standardization=True)(_t(s), _t(t))
    assert value.item() == pytest.approx(9.0 * _kd_reference(_zscore(s), _zscore(t), tau),
                                         rel=1e-5)
    manual = KDLoss(tau=tau, loss_weight=9.0)(_t(_zscore(s)), _t(_zscore(t)))
    assert value.item() == pytest.approx(manual.item(), rel=1e-5)
    plain = KDLoss(tau=tau, loss_weight=9.0)(_t(s), _t(t))
    assert abs(plain.item() - value.item()) > 1e-3  # the option does something


def test_dkd_dist_and_multi_teacher_with_standardisation_use_standardised_logits():
    s, t, y = _logits(n=16, c=10, seed=9)
    zs, zt = _t(_zscore(s)), _t(_zscore(t))
    dkd = DKDLoss(alpha=18.0, beta=36.0, tau=3.0, logit_standardization=True)
    tckd_ref, nckd_ref = _dkd_reference(_zscore(s), _zscore(t), y, 3.0)
    assert dkd(_t(s), _t(t), _samples(y)).item() == pytest.approx(
        18 * tckd_ref.mean() + 36 * nckd_ref.mean(), rel=1e-5)
    assert dkd(_t(s), _t(t), _samples(y)).item() == pytest.approx(
        DKDLoss(alpha=18.0, beta=36.0, tau=3.0)(zs, zt, _samples(y)).item(), rel=1e-5)
    dist = DISTLoss(tau=4.0, logit_standardization=True)
    assert dist(_t(s), _t(t)).item() == pytest.approx(
        _dist_reference(_zscore(s), _zscore(t), 4.0, 1.0, 1.0)[2], rel=1e-5)
    t2 = _logits(n=16, c=10, seed=10)[1]
    for combine in ('arithmetic', 'geometric'):
        multi = MultiTeacherKDLoss(combine=combine, tau=2.0, logit_standardization=True)
        manual = MultiTeacherKDLoss(combine=combine, tau=2.0)
        assert multi(_t(s), [_t(t), _t(t2)]).item() == pytest.approx(
            manual(zs, [zt, _t(_zscore(t2))]).item(), rel=1e-5)
    single = MultiTeacherKDLoss(tau=2.0, logit_standardization=True)(_t(s), [_t(t)])
    assert single.item() == pytest.approx(_kd_reference(_zscore(s), _zscore(t), 2.0), rel=1e-5)


def test_standardisation_gradient_flows_through_mean_and_std():
    s, t, _ = _logits(n=4, c=10, seed=11)
    student = _t(s).requires_grad_()
    KDLoss(tau=2.0, logit_standardization=True)(student, _t(t)).backward()
    grad = student.grad
    # The z-score is invariant to shift and scale of each row, so its gradient is
    # orthogonal to both directions: each row sums to 0 and is orthogonal to the row.
    assert torch.allclose(grad.sum(1), torch.zeros(4), atol=1e-5)
    assert torch.allclose((grad * (student - student.mean(1, keepdim=True))).sum(1),
                          torch.zeros(4), atol=1e-4)


# ---------------------------------------------------------------- distillers and configs
def _dkd_model(tiny_teacher, **loss_args) -> dict:
    return kd_model(tiny_teacher, losses=dict(loss_dkd=dict(
        type='DKDLoss', student='logits', teacher='logits', **loss_args)))


def test_dkd_distiller_builds_without_labels_and_uses_the_batch_labels(tiny_teacher):
    model = MODELS.build(_dkd_model(tiny_teacher, alpha=1.0, beta=8.0, tau=4.0))  # dry run
    model.eval()
    torch.manual_seed(0)
    inputs = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        s = model.student(inputs, mode='tensor')
        t = model.teacher(inputs, mode='tensor')
    labels = (t.argmax(1) + 1) % 10  # never the teacher's argmax
    samples = _samples(labels.numpy())
    with torch.no_grad():
        losses = model.loss(inputs, samples)
    expected = DKDLoss(alpha=1.0, beta=8.0, tau=4.0)(s, t, samples)
    assert losses['loss_dkd'].item() == pytest.approx(expected.item(), rel=1e-5)
    assert losses['loss_dkd'].item() != pytest.approx(
        DKDLoss(alpha=1.0, beta=8.0, tau=4.0)(s, t, None).item(), rel=1e-3)


def test_dkd_trains_in_a_runner_with_a_ramping_warm_up(tmp_path, fashion_mnist_root,
                                                       tiny_teacher):
    cfg = runner_cfg(str(tmp_path), fashion_mnist_root,
                     _dkd_model(tiny_teacher, alpha=1.0, beta=8.0, tau=4.0), epochs=1,
                     train_samples=64, val_samples=32)
    cfg['train_dataloader']['batch_size'] = 16
    cfg['custom_hooks'] = [dict(type='DistillLossScheduleHook', warmup=1, losses=['loss_dkd'])]
    Runner.from_cfg(Config(cfg)).train()
    lines = []
    for path in glob.glob(osp.join(str(tmp_path), '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            lines += [json.loads(line) for line in f]
    steps = [line for line in lines if 'loss_dkd' in line]
    assert [line['distill_scale'] for line in steps] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(math.isfinite(line['loss_dkd']) and line['loss_dkd'] > 0 for line in steps)
    for line in steps:
        assert line['loss'] == pytest.approx(line['loss_task'] + line['loss_dkd'], rel=1e-5)


def _method_configs():
    return sorted(p for d in METHOD_DIRS for p in glob.glob(osp.join(REPO, 'configs', d, '*.py')))


def test_every_logit_method_config_builds():
    paths = _method_configs()
    assert len(paths) == 8
    for path in paths:
        cfg = Config.fromfile(path)
        cfg.model.teacher.checkpoint = None
        with pytest.warns(UserWarning, match='randomly initialised'):
            distiller = MODELS.build(cfg.model)
        (loss, ) = distiller.distill_losses.values()
        assert type(loss) in (DKDLoss, DISTLoss, KDLoss), path
        assert getattr(loss, 'logit_standardization') == ('logit_standardization' in path), path
        if isinstance(loss, DKDLoss):
            hook = next(h for h in cfg.custom_hooks if h.type == 'DistillLossScheduleHook')
            epochs = cfg.train_cfg.max_epochs
            assert hook.warmup == pytest.approx(20 * epochs / 240), path


def test_zoo_lists_the_fashion_mnist_configs():
    import sys
    sys.path.insert(0, osp.join(REPO, 'tools', 'benchmark'))
    from model_zoo import ZOO
    by_name = {entry.name: entry for entry in ZOO}
    for name in ('dkd_resnet56_resnet8', 'dist_resnet56_resnet8', 'kd_ls_resnet56_resnet8',
                 'dkd_ls_resnet56_resnet8'):
        assert osp.isfile(osp.join(REPO, by_name[name].config)), name
