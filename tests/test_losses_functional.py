"""mmkd.losses.functional: the one KL, its binary form, tempered softmax, paired values."""
import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from mmkd.losses import (
    ChannelWiseDivergence,
    DMLLoss,
    HCLLoss,
    KDLoss,
    MultiTeacherKDLoss,
    OFDLoss,
    PixelWiseKDLoss,
    ShapeMismatchError,
    SigmoidKDLoss,
    binary_kl_divergence,
    kl_divergence,
    paired,
    tempered_log_softmax,
    tempered_softmax,
    tensor_list,
)


def reference_kl(p: torch.Tensor, q: torch.Tensor, dim: int) -> torch.Tensor:
    """sum_i p_i (log p_i - log q_i) in float64, straight from the definition (0 log 0 = 0)."""
    p, q = p.double(), q.double()
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))
    return terms.sum(dim)


def random_pair(shape, dim, generator, scale=3.0):
    s = torch.randn(shape, generator=generator) * scale
    t = torch.randn(shape, generator=generator) * scale
    return F.log_softmax(t, dim=dim), F.log_softmax(s, dim=dim)


# ------------------------------------------------------------------ kl_divergence
@pytest.mark.parametrize('shape, dim', [((8, 10), 1), ((4, 5, 6), 2), ((3, 7, 2, 2), 1),
                                        ((2, 3, 4), -1)])
@pytest.mark.parametrize('target_is_log', [True, False])
def test_kl_divergence_matches_the_definition(shape, dim, target_is_log):
    generator = torch.Generator().manual_seed(1)
    log_p, log_q = random_pair(shape, dim, generator)
    target = log_p if target_is_log else log_p.exp()
    expected = reference_kl(log_p.exp(), log_q.exp(), dim)  # one value per distribution

    per_dist = kl_divergence(target, log_q, dim=dim, target_is_log=target_is_log)
    assert per_dist.shape == expected.shape
    torch.testing.assert_close(per_dist.double(), expected, rtol=1e-5, atol=1e-6)
    for reduction, value in [('sum', expected.sum()),
                             ('batchmean', expected.sum() / shape[0]),
                             ('mean', expected.mean())]:
        got = kl_divergence(target, log_q, dim=dim, target_is_log=target_is_log,
                            reduction=reduction)
        assert got.dim() == 0
        torch.testing.assert_close(got.double(), value, rtol=1e-5, atol=1e-6)


def test_kl_divergence_of_a_hand_computed_pair():
    p = torch.tensor([[0.8, 0.2]])
    q = torch.tensor([[0.5, 0.5]])
    expected = 0.8 * math.log(1.6) + 0.2 * math.log(0.4)  # 0.19274
    got = kl_divergence(p, q.log(), reduction='batchmean')
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert kl_divergence(p.log(), q.log(), target_is_log=True).item() == pytest.approx(
        expected, rel=1e-6)


def test_zero_target_probabilities_count_zero():
    # 0 log 0 = 0: a class the target rules out adds nothing, wherever q puts its mass.
    p = torch.tensor([[1.0, 0.0, 0.0]])
    log_q = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    got = kl_divergence(p, log_q)
    assert torch.isfinite(got).all()
    assert got.item() == pytest.approx(math.log(2), rel=1e-6)
    # Broadcasting: one log_q for several targets.
    both = kl_divergence(torch.stack([p, p]), log_q.unsqueeze(0), dim=-1)
    assert both.shape == (2, 1) and torch.equal(both[0], both[1])


def test_kl_divergence_is_never_below_zero_on_nearly_equal_distributions():
    generator = torch.Generator().manual_seed(0)
    rounded_below = 0
    for i in range(200):
        logits = torch.randn(4, 16, generator=generator) * 5
        # Identical, then a few ulps apart, then 1e-6 apart.
        other = logits if i % 3 == 0 else logits + torch.randn(
            logits.shape, generator=generator) * (1e-7 if i % 3 == 1 else 1e-6)
        for tau in (1.0, 4.0):
            log_p = tempered_log_softmax(logits, tau)
            log_q = tempered_log_softmax(other, tau)
            raw = F.kl_div(log_q, log_p, reduction='none', log_target=True).sum(1)
            rounded_below += int((raw < 0).sum())
            for target, is_log in ((log_p, True), (log_p.exp(), False)):
                assert (kl_divergence(target, log_q, target_is_log=is_log) >= 0).all()
                for reduction in ('sum', 'batchmean', 'mean'):
                    assert kl_divergence(target, log_q, target_is_log=is_log,
                                         reduction=reduction) >= 0
    # The guard is needed: unclamped, float32 round-off goes below zero here.
    assert rounded_below > 0


def test_identical_distributions_give_exactly_zero():
    log_p = tempered_log_softmax(torch.randn(5, 7), 2.0)
    assert torch.equal(kl_divergence(log_p, log_p, target_is_log=True), torch.zeros(5))
    assert kl_divergence(log_p, log_p, target_is_log=True, reduction='batchmean') == 0


def test_kl_divergence_rejects_an_unknown_reduction():
    with pytest.raises(ValueError, match="reduction must be one of"):
        kl_divergence(torch.ones(2, 2) / 2, torch.zeros(2, 2), reduction='elementwise_mean')


def test_kl_divergence_gradient_is_that_of_the_formula():
    generator = torch.Generator().manual_seed(3)
    log_p, _ = random_pair((6, 5), 1, generator)
    z = torch.randn(6, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    kl_divergence(log_p.double(), F.log_softmax(z, 1), target_is_log=True,
                  reduction='batchmean').backward()
    # d/dz of KL(p || softmax(z)) averaged over the batch is (softmax(z) - p) / N.
    torch.testing.assert_close(z.grad, (F.softmax(z, 1) - log_p.double().exp()) / 6)


# ------------------------------------------------------------ binary_kl_divergence
def reference_binary_kl(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    p, q = torch.sigmoid(t.double()), torch.sigmoid(z.double())
    return p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))


def test_binary_kl_matches_the_bernoulli_formula():
    generator = torch.Generator().manual_seed(2)
    t = torch.randn(3, 8, 4, 4, generator=generator) * 2
    z = torch.randn(3, 8, 4, 4, generator=generator) * 2
    expected = reference_binary_kl(t, z)
    got = binary_kl_divergence(t, z)
    assert got.shape == t.shape
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(binary_kl_divergence(t, z, reduction='sum').double(),
                               expected.sum(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(binary_kl_divergence(t, z, reduction='mean').double(),
                               expected.mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(binary_kl_divergence(t, z, reduction='batchmean').double(),
                               expected.sum() / 3, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='batch dimension'):
        binary_kl_divergence(torch.tensor(1.0), torch.tensor(0.0), reduction='batchmean')


def test_binary_kl_is_finite_for_saturated_scores_and_never_negative():
    t = torch.tensor([40.0, -40.0, 0.0, 30.0])
    z = torch.tensor([-40.0, 40.0, 0.0, 30.0])
    got = binary_kl_divergence(t, z)
    assert torch.isfinite(got).all() and (got >= 0).all()
    assert got[2] == 0 and got[3] == 0
    # (sigma(40) - sigma(-40)) * (40 - -40) / 2 = 40 tanh(20) nats, though 1 - sigma(40)
    # underflows even in float64 (where the sigmoid formula gives nan).
    assert got[0].item() == pytest.approx(40 * math.tanh(20), rel=1e-6)
    assert got[1].item() == pytest.approx(40 * math.tanh(20), rel=1e-6)
    generator = torch.Generator().manual_seed(4)
    for _ in range(200):
        close = torch.randn(64, generator=generator) * 1e-3
        nudged = close + torch.randn(64, generator=generator) * 1e-6
        assert (binary_kl_divergence(close, nudged) >= 0).all()
        assert binary_kl_divergence(close, nudged, reduction='sum') >= 0


# ------------------------------------------------------------------ tempered softmax
def test_tempered_softmax_is_fp32_and_divides_by_tau():
    z = torch.randn(4, 6).bfloat16()
    log_p = tempered_log_softmax(z, 2.0)
    assert log_p.dtype == torch.float32
    assert torch.equal(log_p, F.log_softmax(z.float() / 2.0, dim=1))
    assert torch.equal(tempered_softmax(z, 2.0, dim=0), F.softmax(z.float() / 2.0, dim=0))


# ------------------------------------------------------ KD is bit for bit the same
@pytest.mark.parametrize('shape', [(1, 2), (8, 10), (64, 100), (5, 1000), (3, 7, 2)])
@pytest.mark.parametrize('tau', [1.0, 4.0, 0.5])
@pytest.mark.parametrize('reduction', ['batchmean', 'sum'])
def test_kd_loss_is_bit_identical_to_kl_div(shape, tau, reduction):
    generator = torch.Generator().manual_seed(hash((shape, tau)) % 2**31)
    for _ in range(5):
        s = (torch.randn(shape, generator=generator) * 3).requires_grad_()
        t = torch.randn(shape, generator=generator) * 3
        s_old = s.detach().clone().requires_grad_()
        old = F.kl_div(F.log_softmax(s_old.float() / tau, dim=1),
                       F.log_softmax(t.float() / tau, dim=1),
                       reduction=reduction, log_target=True) * tau**2
        new = KDLoss(tau=tau, reduction=reduction)(s, t)
        assert torch.equal(new, old)
        new.backward()
        old.backward()
        assert torch.equal(s.grad, s_old.grad)


def test_multi_teacher_kd_is_bit_identical_to_kl_div():
    generator = torch.Generator().manual_seed(5)
    s = torch.randn(16, 10, generator=generator)
    teachers = [torch.randn(16, 10, generator=generator) for _ in range(3)]
    for combine in ('arithmetic', 'geometric'):
        loss = MultiTeacherKDLoss(combine=combine, weights=[1, 2, 3], tau=3.0)
        old = F.kl_div(F.log_softmax(s / 3.0, dim=1), loss.target(teachers),
                       reduction='batchmean') * 9.0
        assert torch.equal(loss(s, teachers), old)


# ------------------------------------- every KL loss: the old formulas, never below zero
def old_cwd(s, t, tau):
    n, c = s.shape[:2]
    log_p_s = F.log_softmax(s.flatten(2) / tau, dim=2)
    log_p_t = F.log_softmax(t.flatten(2) / tau, dim=2)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum() * tau**2 / (n * c)


def old_pixel_kd(s, t, tau):
    log_p_s = F.log_softmax(s / tau, dim=1)
    log_p_t = F.log_softmax(t / tau, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean() * tau**2


def old_dml(own, peers, tau, form):
    def kl(target, log_q):
        return (torch.special.xlogy(target, target) - target * log_q).sum(-1).mean(-1)

    peer_p = F.softmax(peers / tau, dim=-1)
    log_p = F.log_softmax(own / tau, dim=1).unsqueeze(0)
    if form == 'kl':
        return kl(peer_p, log_p).mean() * tau**2
    p = log_p.exp()
    log_m = torch.log((peer_p + p) / 2).clamp_min(torch.finfo(p.dtype).min)
    return (0.5 * kl(peer_p, log_m) + 0.5 * kl(p, log_m)).mean() * tau**2


def test_dense_kl_losses_keep_their_values():
    # The same float32 operations as before the KL was shared: the same bits.
    generator = torch.Generator().manual_seed(6)
    for _ in range(5):
        s = torch.randn(2, 5, 6, 6, generator=generator)
        t = torch.randn(2, 5, 6, 6, generator=generator)
        assert torch.equal(ChannelWiseDivergence(tau=4.0)(s, t), old_cwd(s, t, 4.0))
        # normalize='pixels' is the per-pixel mean of before issue #19; the default, the
        # official sum over the batch / (H * W), is N = 2 times that.
        assert torch.equal(PixelWiseKDLoss(tau=2.0, normalize='pixels')(s, t),
                           old_pixel_kd(s, t, 2.0))
        torch.testing.assert_close(PixelWiseKDLoss(tau=2.0)(s, t), 2 * old_pixel_kd(s, t, 2.0))


def test_dml_loss_keeps_its_formula_and_values():
    generator = torch.Generator().manual_seed(7)
    own = torch.randn(6, 10, generator=generator)
    peers = torch.randn(2, 6, 10, generator=generator)
    assert torch.equal(DMLLoss(tau=2.0)(own, peers), old_dml(own, peers, 2.0, 'kl'))
    # The JS form now clamps before the log and gives the member's own term its
    # log-probabilities (finite gradients in the tail): the same value, not the same bits.
    torch.testing.assert_close(DMLLoss(tau=2.0, form='js')(own, peers),
                               old_dml(own, peers, 2.0, 'js'), rtol=1e-6, atol=1e-7)
    p = F.softmax(peers.double() / 2, dim=-1)
    q = F.softmax(own.double() / 2, dim=1)
    kl = reference_kl(p, q.expand_as(p), -1).mean()
    tolerance = dict(rtol=1e-5, atol=1e-6)  # float32 against float64
    torch.testing.assert_close(DMLLoss(tau=2.0)(own, peers).double(), 4 * kl, **tolerance)
    m = (p + q) / 2
    js = (reference_kl(p, m, -1) / 2 + reference_kl(q.expand_as(p), m, -1) / 2).mean()
    torch.testing.assert_close(DMLLoss(tau=2.0, form='js')(own, peers).double(), 4 * js,
                               **tolerance)
    ensemble = reference_kl(p.mean(0), q, -1).mean()
    torch.testing.assert_close(DMLLoss(tau=2.0, ensemble=True)(own, peers).double(),
                               4 * ensemble, **tolerance)


def test_sigmoid_kd_loss_is_the_binary_kl():
    generator = torch.Generator().manual_seed(9)
    s = [torch.randn(2, 6, 4, 4, generator=generator), torch.randn(2, 6, 2, 2, generator=generator)]
    t = [torch.randn(2, 6, 4, 4, generator=generator), torch.randn(2, 6, 2, 2, generator=generator)]
    expected = sum(reference_binary_kl(b / 2, a / 2).sum() for a, b in zip(s, t))
    anchors = 2 * 3 * 16 + 2 * 3 * 4
    torch.testing.assert_close(SigmoidKDLoss(tau=2.0, num_classes=2)(s, t).double(),
                               expected * 4 / anchors, rtol=1e-5, atol=1e-6)


def test_kl_losses_are_never_below_zero_where_student_and_teacher_agree():
    generator = torch.Generator().manual_seed(8)
    losses = [KDLoss(tau=4.0), KDLoss(tau=1.0, reduction='sum'), MultiTeacherKDLoss(tau=4.0),
              MultiTeacherKDLoss(combine='geometric'), DMLLoss(), DMLLoss(form='js'),
              ChannelWiseDivergence(tau=4.0), PixelWiseKDLoss(), SigmoidKDLoss(num_classes=4)]
    for _ in range(20):
        t = torch.randn(2, 8, 3, 3, generator=generator)
        s = t + torch.randn(t.shape, generator=generator) * 1e-6
        for loss in losses:
            if isinstance(loss, (ChannelWiseDivergence, PixelWiseKDLoss, SigmoidKDLoss)):
                value = loss(s, t)  # maps
            elif isinstance(loss, KDLoss):
                value = loss(s.flatten(1), t.flatten(1))  # class scores
            else:
                value = loss(s.flatten(1), [t.flatten(1)])  # a list of one teacher or peer
            assert value >= 0, type(loss).__name__


# ------------------------------------------------------------------------- paired
def test_paired_takes_tensors_or_lists():
    a, b = torch.zeros(1), torch.ones(1)
    assert paired(a, b, 'X') == [(a, b)]
    assert paired([a, b], (b, a), 'X') == [(a, b), (b, a)]
    assert tensor_list(a) == [a] and tensor_list((a, b)) == [a, b]


def test_paired_names_both_counts():
    with pytest.raises(ShapeMismatchError,
                       match=r'OFDLoss needs as many student as teacher features; '
                             r'got student \(2,\) and teacher \(1,\)') as err:
        paired([torch.zeros(1)] * 2, torch.zeros(1), 'OFDLoss', 'features')
    assert err.value.student_shape == (2, ) and err.value.teacher_shape == (1, )


@pytest.mark.parametrize('loss, items', [(OFDLoss(), 'features'), (HCLLoss(), 'features'),
                                         (SigmoidKDLoss(), 'levels')])
def test_list_losses_say_the_counts_differ(loss, items):
    x = torch.randn(2, 4, 4, 4)
    with pytest.raises(ShapeMismatchError,
                       match=rf'{type(loss).__name__} needs as many student as teacher {items}; '
                             r'got student \(1,\) and teacher \(2,\)'):
        loss([x], [x, x])


def test_forward_signatures_the_distiller_reads():
    # MultiTeacherKDLoss inherits forward; losses with more arguments still name them.
    assert 'forward' not in vars(MultiTeacherKDLoss)
    assert list(inspect.signature(MultiTeacherKDLoss.forward).parameters) == [
        'self', 'student', 'teacher']
    assert 'data_samples' in inspect.signature(PixelWiseKDLoss.forward).parameters
    assert 'teacher_is_prob' in inspect.signature(DMLLoss.forward).parameters
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    loss = MultiTeacherKDLoss(tau=2.0, loss_weight=0.5)
    assert torch.equal(loss(s, [t]), 0.5 * loss.loss(s, [t]))


def test_dml_js_form_keeps_finite_gradients_where_probabilities_underflow():
    from mmkd.losses import DMLLoss
    own = torch.tensor([[120.0, 0.0, -30.0]], requires_grad=True)
    peer = torch.tensor([[120.0, 0.0, -30.0]])
    loss = DMLLoss(form='js')(own, [peer])
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(own.grad).all()
