"""Feature regression (FitNets, Romero et al., ICLR 2015)."""
import torch
import torch.nn.functional as F

from mmkd.registry import MODELS

from .base import BaseDistillLoss


@MODELS.register_module()
class MSELoss(BaseDistillLoss):
    r"""Mean squared error between a (connected) student feature and the teacher's.

    .. math::
        \mathcal{L}_{hint} = \frac{1}{|F|} \, \| r(F_s) - F_t \|_2^2

    where :math:`r` is the connector (regressor) applied to the student and
    :math:`|F|` the number of elements of the whole batch's feature
    (``reduction='mean'``, as RepDistiller's ``HintLoss``). With
    ``reduction='batchmean'`` the squared differences are summed over each
    sample's feature and averaged over the batch:
    :math:`\frac{1}{N} \| r(F_s) - F_t \|_2^2`.

    Fidelity: docs/fidelity.md#fitnets

    Args:
        loss_weight: Factor on the loss.
        reduction: ``'mean'`` (over all elements) or ``'batchmean'`` (the sum
            divided by the batch size).
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = 'mean'):
        super().__init__(loss_weight)
        if reduction not in ('mean', 'batchmean'):
            raise ValueError(f"MSELoss reduction must be 'mean' or 'batchmean'; got {reduction!r}.")
        self.reduction = reduction

    def loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self.check_same_shape(student, teacher)
        if self.reduction == 'mean':
            return F.mse_loss(student.float(), teacher.float())
        return F.mse_loss(student.float(), teacher.float(), reduction='sum') / student.shape[0]
