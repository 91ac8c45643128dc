"""Cosine embedding loss on hidden representations."""
import torch
import torch.nn.functional as F

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError


@MODELS.register_module()
class CosineLoss(BaseDistillLoss):
    r"""Aligns directions of flattened hidden representations.

    .. math::
        \mathcal{L}_{cos} = \frac{1}{N} \sum_{n=1}^{N}
        \Big(1 - \frac{\langle h^s_n, h^t_n \rangle}{\|h^s_n\| \, \|h^t_n\|}\Big)

    with :math:`h_n` sample :math:`n`'s representation flattened to a
    vector (``CosineEmbeddingLoss`` with target 1). The two vectors must
    have the same length: pool or connect first when they do not.

    Fidelity: docs/fidelity.md#cosine

    Args:
        loss_weight: Factor on the loss.
    """

    def loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        s = student.flatten(1).float()
        t = teacher.flatten(1).float()
        if s.shape != t.shape:
            raise ShapeMismatchError(type(self).__name__, student.shape, teacher.shape,
                                     'values with the same number of elements per sample')
        return (1 - F.cosine_similarity(s, t, dim=1, eps=1e-8)).mean()
