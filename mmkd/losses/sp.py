"""Similarity-preserving knowledge distillation (SP; Tung and Mori, ICCV 2019)."""
import torch
import torch.nn.functional as F

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError, TensorOrList
from .functional import paired


def similarity_matrix(feature: torch.Tensor) -> torch.Tensor:
    r"""Row-normalised batch Gram matrix of a feature.

    .. math::
        G = Q Q^\top, \qquad \tilde{G}_{i,:} = \frac{G_{i,:}}{\max(\|G_{i,:}\|_2, 10^{-12})}

    with :math:`Q` the (N, C H W) matrix of the flattened features.

    Args:
        feature: (N, ...) features (any floating dtype; fp32 result).

    Returns:
        (N, N) matrix with rows of unit L2 norm (zero rows stay zero).
    """
    q = feature.float().flatten(1)
    return F.normalize(q @ q.t(), p=2, dim=1)


@MODELS.register_module()
class SPLoss(BaseDistillLoss):
    r"""Matches the student's pairwise activation similarities to the teacher's.

    For each pair :math:`(l, l')` of student and teacher features of a batch
    of :math:`b` samples (:func:`similarity_matrix`):

    .. math::
        \mathcal{L}_{SP} = \frac{\gamma}{b^2} \sum_{(l, l')}
        \big\| \tilde{G}_T^{(l)} - \tilde{G}_S^{(l')} \big\|_F^2

    The two nets' features may differ in channels and spatial size (only the
    batch must agree); the loss does not change when either net's features
    are scaled. The teacher's matrices carry no gradient. The paper and
    RepDistiller (checked by the paper's first author) take the output of
    the last residual group (``ModuleOutputs('backbone.layer3')`` for CIFAR
    ResNets). Since each row of :math:`\tilde{G}` has unit norm, the value
    scales as :math:`1/b`; the CRD benchmark's batch is 64.

    Fidelity: docs/fidelity.md#sp

    Args:
        loss_weight: :math:`\gamma` (the paper's and the CRD benchmark's 3000).

    Example:
        >>> SPLoss()(torch.randn(8, 16, 4, 4), torch.randn(8, 64, 8, 8)).shape
        torch.Size([])
    """

    def __init__(self, loss_weight: float = 3000.0):
        super().__init__(loss_weight)

    def loss(self, student: TensorOrList, teacher: TensorOrList) -> torch.Tensor:
        pairs = paired(student, teacher, type(self).__name__, 'features')
        total = pairs[0][0].new_zeros((), dtype=torch.float32)
        for s, t in pairs:
            if s.dim() < 2 or t.dim() < 2 or s.shape[0] != t.shape[0]:
                raise ShapeMismatchError(type(self).__name__, s.shape, t.shape,
                                         'features with the same batch size')
            g_s = similarity_matrix(s)
            with torch.no_grad():
                g_t = similarity_matrix(t)
            total = total + (g_t - g_s).pow(2).sum() / (s.shape[0] ** 2)
        return total
