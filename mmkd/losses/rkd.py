"""Relational knowledge distillation (Park et al., CVPR 2019)."""
import torch
import torch.nn.functional as F

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError


def pairwise_distances(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances between the rows of ``x`` (N, D), shape (N, N).

    The diagonal is exactly zero; off the diagonal the squared distance is
    clamped at ``eps`` before the square root, so the gradient stays finite
    for coinciding embeddings.
    """
    squared = (x.unsqueeze(0) - x.unsqueeze(1)).pow(2).sum(-1)
    off_diagonal = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
    return torch.where(off_diagonal, squared.clamp(min=eps).sqrt(), torch.zeros_like(squared))


def distance_potential(x: torch.Tensor) -> torch.Tensor:
    r"""RKD-D potential: distances divided by their mean over pairs :math:`i \ne j`."""
    distances = pairwise_distances(x)
    n = len(x)
    mean = distances.sum() / max(n * (n - 1), 1)
    return distances / mean.clamp(min=1e-12)


def angle_potential(x: torch.Tensor) -> torch.Tensor:
    r"""RKD-A potential: :math:`\langle e^{ij}, e^{kj} \rangle` for all (i, j, k), shape (N, N, N).

    ``out[j, i, k]`` is the cosine of the angle at :math:`x_j` between
    :math:`x_i` and :math:`x_k`; entries with :math:`i = j` or :math:`k = j`
    are zero (the unit vector of a zero difference is taken as zero).
    """
    unit = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)  # unit[j, i] = e^{ij}
    return torch.bmm(unit, unit.transpose(1, 2))


@MODELS.register_module()
class RKDLoss(BaseDistillLoss):
    r"""Distance- and angle-wise relational KD between two batches of embeddings.

    The student mimics the *relations* between the teacher's embeddings
    :math:`t_1 .. t_N` of a batch, not the embeddings themselves, so the
    two nets may have embeddings of different sizes. With :math:`l_\delta`
    the Huber loss (``smooth_l1`` with :math:`\delta = 1`):

    Distance-wise, with :math:`\mu` the mean distance over the pairs of the
    batch:

    .. math::
        \psi_D(t_i, t_j) = \frac{1}{\mu} \| t_i - t_j \|_2, \qquad
        \mathcal{L}_{RKD\text{-}D} = \sum_{(i, j)} l_\delta\big(\psi_D(t_i, t_j),
        \psi_D(s_i, s_j)\big)

    Angle-wise, with :math:`e^{ij} = (t_i - t_j) / \| t_i - t_j \|_2`:

    .. math::
        \psi_A(t_i, t_j, t_k) = \cos \angle t_i t_j t_k = \langle e^{ij}, e^{kj} \rangle,
        \qquad \mathcal{L}_{RKD\text{-}A} = \sum_{(i, j, k)} l_\delta\big(
        \psi_A(t_i, t_j, t_k), \psi_A(s_i, s_j, s_k)\big)

    and :math:`\mathcal{L} = \lambda_D \mathcal{L}_{RKD\text{-}D} + \lambda_A
    \mathcal{L}_{RKD\text{-}A}`. As in the authors' code, each sum is
    taken as a mean over all :math:`N^2` pairs and :math:`N^3` triplets
    (those with repeated indices add zero) and :math:`\mu` is computed on
    each net's own batch. Feature maps are flattened to vectors.

    Fidelity: docs/fidelity.md#rkd

    Args:
        distance_weight: :math:`\lambda_D` (the paper uses 25).
        angle_weight: :math:`\lambda_A` (the paper uses 50).
        loss_weight: Factor on the whole loss.

    Example:
        >>> loss = RKDLoss()(torch.randn(16, 64), torch.randn(16, 256))
    """

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0,
                 loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if distance_weight < 0 or angle_weight < 0 or distance_weight + angle_weight == 0:
            raise ValueError('RKDLoss needs non-negative distance_weight and angle_weight, not '
                             f'both zero; got {distance_weight} and {angle_weight}.')
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight

    def loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if student.dim() < 2 or student.shape[0] != teacher.shape[0]:
            raise ShapeMismatchError(type(self).__name__, student.shape, teacher.shape,
                                     'batches of embeddings with the same batch size')
        s = student.float().flatten(1)
        t = teacher.float().flatten(1).detach()
        total = s.new_zeros(())
        if self.distance_weight:
            total = total + self.distance_weight * F.smooth_l1_loss(
                distance_potential(s), distance_potential(t))
        if self.angle_weight:
            total = total + self.angle_weight * F.smooth_l1_loss(
                angle_potential(s), angle_potential(t))
        return total

    def extra_repr(self) -> str:
        return (f'distance_weight={self.distance_weight}, angle_weight={self.angle_weight}, '
                f'loss_weight={self.loss_weight}')
