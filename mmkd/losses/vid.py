"""Variational information distillation (VID; Ahn et al., CVPR 2019)."""
from typing import List, Sequence, Tuple, Union

import torch

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError, TensorOrList
from .functional import tensor_list

#: A predicted Gaussian ``(mean, variance)`` (e.g. :class:`~mmkd.connectors.VIDRegressor`'s
#: output), or a list of them.
GaussianOrList = Union[Tuple[torch.Tensor, torch.Tensor],
                       Sequence[Tuple[torch.Tensor, torch.Tensor]]]


def gaussian_nll(mean: torch.Tensor, variance: torch.Tensor,
                 target: torch.Tensor) -> torch.Tensor:
    r"""Mean negative log-likelihood of ``target`` under :math:`\mathcal{N}(\mu, \sigma^2)`.

    .. math::
        \frac{1}{|t|} \sum \frac{1}{2} \Big( \log \sigma^2
        + \frac{(t - \mu)^2}{\sigma^2} \Big)

    without the constant :math:`\frac{1}{2} \log 2\pi`, averaged over every
    element of ``target`` (in fp32).

    Args:
        mean: :math:`\mu`, shape of ``target``.
        variance: :math:`\sigma^2 > 0`, broadcastable to ``target``.
        target: :math:`t`.
    """
    variance = variance.float()
    nll = 0.5 * (torch.log(variance) + (target.float() - mean.float()).pow(2) / variance)
    return nll.mean()


def _predictions(student) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """``(mean, variance)`` or a list of them, as a list of pairs."""
    if isinstance(student, tuple) and len(student) == 2 and all(
            isinstance(v, torch.Tensor) for v in student):
        return [tuple(student)]
    if isinstance(student, (list, tuple)) and student and all(
            isinstance(p, tuple) and len(p) == 2 and all(isinstance(v, torch.Tensor) for v in p)
            for p in student):
        return [tuple(p) for p in student]
    raise TypeError(
        'VIDLoss takes the (mean, variance) predictions of a VIDRegressor connector (or a '
        "list of them, e.g. ConnectorList(connector=dict(type='VIDRegressor'))) as student; "
        f'got {type(student).__name__}. Map the student features through one: '
        "connectors=dict(vid=dict(type='ConnectorList', connector=dict(type='VIDRegressor'), "
        "input='student.feats', like='teacher.feats')) and student='vid'.")


@MODELS.register_module()
class VIDLoss(BaseDistillLoss):
    r"""Negative log-likelihood of the teacher's features under the student's prediction.

    VID maximises a variational lower bound on the mutual information
    between teacher and student features; with a Gaussian variational
    distribution :math:`q(t \mid s) = \mathcal{N}(\mu(s), \sigma^2)`
    predicted from the student (:class:`~mmkd.connectors.VIDRegressor`:
    regressor :math:`\mu`, one learned variance per channel), the part that
    depends on the student is, for each pair :math:`k` of features,

    .. math::
        \mathcal{L}_{VID} = \sum_k \lambda \frac{1}{N C_k H_k W_k}
        \sum_{n, c, h, w} \frac{1}{2} \Big( \log \sigma_{k,c}^2 +
        \frac{(t^k_{n,c,h,w} - \mu^k_{n,c,h,w}(s))^2}{\sigma_{k,c}^2} \Big)

    (:func:`gaussian_nll`; the constant :math:`\frac{1}{2} \log 2\pi` is left
    out, and each pair is averaged over its elements as in the code
    RepDistiller took from the VID authors). The loss itself holds no
    parameter: the regressor and the variance are the connector's, so they
    are trained with the student and kept out of the exported student like
    any connector. Gradients reach the mean, the variance and through them
    the student; the teacher's features carry none.

    Fidelity: docs/fidelity.md#vid

    Args:
        loss_weight: :math:`\lambda` (the CRD benchmark's 1).

    Raises:
        ShapeMismatchError: A predicted mean differs in shape from its
            teacher feature (RepDistiller average-pools the larger of the two
            spatial sizes; record features of matching size instead).

    Example:
        >>> from mmkd.connectors import VIDRegressor
        >>> pred = VIDRegressor(16, 64)(torch.rand(2, 16, 8, 8))
        >>> VIDLoss()(pred, torch.rand(2, 64, 8, 8)).shape
        torch.Size([])
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__(loss_weight)

    def loss(self, student: GaussianOrList, teacher: TensorOrList) -> torch.Tensor:
        predictions, targets = _predictions(student), tensor_list(teacher)
        if len(predictions) != len(targets):
            raise ShapeMismatchError(type(self).__name__, (len(predictions), ),
                                     (len(targets), ), 'as many predictions as teacher features')
        total = targets[0].new_zeros((), dtype=torch.float32)
        for (mean, variance), t in zip(predictions, targets):
            if mean.shape != t.shape:
                raise ShapeMismatchError(type(self).__name__, mean.shape, t.shape,
                                         'a predicted mean of the shape of its teacher feature')
            total = total + gaussian_nll(mean, variance, t.detach())
        return total
