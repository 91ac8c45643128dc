"""The losses against their formulas."""
import pytest
import torch
import torch.nn.functional as F

from mmkd.losses import CosineLoss, KDLoss, MSELoss, ShapeMismatchError


def test_kd_loss_is_tau_squared_kl_of_softened_predictions():
    torch.manual_seed(0)
    s, t = torch.randn(6, 10), torch.randn(6, 10)
    tau = 3.0
    p_t = F.softmax(t / tau, dim=1)
    expected = (p_t * (p_t.log() - F.log_softmax(s / tau, dim=1))).sum(1).mean() * tau**2
    assert torch.allclose(KDLoss(tau=tau)(s, t), expected, atol=1e-6)
    assert torch.allclose(KDLoss(tau=tau, loss_weight=0.5)(s, t), 0.5 * expected, atol=1e-6)
    assert KDLoss(tau=tau)(t, t).abs() < 1e-6


def test_kd_loss_gradient_pulls_the_student_towards_the_teacher():
    s = torch.zeros(1, 3, requires_grad=True)
    t = torch.tensor([[5.0, 0.0, 0.0]])
    KDLoss(tau=1)(s, t).backward()
    assert s.grad[0, 0] < 0 < s.grad[0, 1]


def test_kd_loss_in_bf16_autocast_is_computed_in_fp32():
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = KDLoss()(s.bfloat16(), t.bfloat16())
    assert loss.dtype == torch.float32


def test_mse_and_cosine():
    s, t = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    assert torch.allclose(MSELoss()(s, t), ((s - t)**2).mean())
    assert torch.allclose(MSELoss(reduction='batchmean')(s, t), ((s - t)**2).sum() / 2)
    assert CosineLoss()(s, 2 * s).abs() < 1e-6
    assert torch.allclose(CosineLoss()(s, -s), torch.tensor(2.0))


@pytest.mark.parametrize('loss', [KDLoss(), MSELoss(), CosineLoss()])
def test_shape_mismatch_names_both_shapes(loss):
    with pytest.raises(ShapeMismatchError, match=r'student \(2, 4\).*teacher \(2, 5\)'):
        loss(torch.randn(2, 4), torch.randn(2, 5))
