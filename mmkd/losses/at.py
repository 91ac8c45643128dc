"""Attention transfer (AT; Zagoruyko and Komodakis, ICLR 2017)."""
import torch
import torch.nn.functional as F

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError, TensorOrList
from .functional import paired


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    r"""The activation-based spatial attention map of a feature, L2-normalised.

    .. math::
        Q(A) = \mathrm{vec}\Big(\frac{1}{C} \sum_{c=1}^{C} |A_c|^p\Big), \qquad
        \hat{Q} = \frac{Q}{\max(\|Q\|_2, 10^{-12})}

    (the channel mean of the authors' code; the paper's channel sum gives
    the same map after the normalisation).

    Args:
        feature: (N, C, H, W) features of any floating dtype (fp32 result).
        p: The exponent :math:`p` (2 in the paper and the code).

    Returns:
        (N, H * W) maps, each of unit L2 norm (zero maps stay zero).

    Example:
        >>> attention_map(torch.rand(2, 16, 8, 8)).shape
        torch.Size([2, 64])
    """
    if feature.dim() != 4:
        raise ValueError(f'attention_map takes (N, C, H, W) features; got shape '
                         f'{tuple(feature.shape)}.')
    q = feature.float().abs().pow(p).mean(1).flatten(1)
    return F.normalize(q, p=2, dim=1)


@MODELS.register_module()
class ATLoss(BaseDistillLoss):
    r"""Activation-based attention transfer between pairs of stage features.

    For each pair :math:`j` of student and teacher features with the same
    spatial size (any channel counts), with :math:`\hat{Q}` the normalised
    attention map of :func:`attention_map`:

    .. math::
        \mathcal{L}_{AT} = \beta \sum_{j} \frac{1}{N \, H_j W_j}
        \sum_{n=1}^{N} \big\| \hat{Q}_S^{j}(n) - \hat{Q}_T^{j}(n) \big\|_2^2

    This is the authors' code (``at_loss``: the mean of the squared
    differences over the batch and the positions, summed over the pairs,
    times ``beta``) and RepDistiller's. The paper's Eq. 2 writes
    :math:`\frac{\beta}{2} \sum_j \| \cdot \|_p` and says that
    :math:`\beta = 10^3` is divided by the batch size and the number of
    elements of the map, i.e. the mean above; its results come from the
    code, which has neither the :math:`1/2` nor an unsquared norm.

    ``student`` and ``teacher`` are one feature or lists of features
    (e.g. :class:`~mmkd.recorders.StageFeatures` with ``pre_relu=False``: the
    outputs of the residual groups, where the authors take them). The
    teacher's maps carry no gradient.

    Fidelity: docs/fidelity.md#at

    Args:
        p: Exponent of the attention map (2).
        loss_weight: :math:`\beta` (the paper's and the CRD benchmark's 1000).

    Raises:
        ShapeMismatchError: A pair has different spatial sizes or batch
            sizes (the authors' code does not handle it; RepDistiller
            average-pools the larger map to the smaller one: map such a pair
            through a connector or record features of matching size).

    Example:
        >>> s = [torch.rand(4, 16, 8, 8), torch.rand(4, 32, 4, 4)]
        >>> t = [torch.rand(4, 64, 8, 8), torch.rand(4, 128, 4, 4)]
        >>> ATLoss()(s, t).shape
        torch.Size([])
    """

    def __init__(self, p: float = 2.0, loss_weight: float = 1000.0):
        super().__init__(loss_weight)
        if p <= 0:
            raise ValueError(f'ATLoss needs p > 0; got {p}.')
        self.p = p

    def loss(self, student: TensorOrList, teacher: TensorOrList) -> torch.Tensor:
        pairs = paired(student, teacher, type(self).__name__, 'features')
        total = pairs[0][0].new_zeros((), dtype=torch.float32)
        for s, t in pairs:
            if s.dim() != 4 or t.dim() != 4 or s.shape[0] != t.shape[0] or \
                    s.shape[2:] != t.shape[2:]:
                raise ShapeMismatchError(
                    type(self).__name__, s.shape, t.shape,
                    '(N, C, H, W) features with the same batch and spatial size (channels may '
                    'differ)')
            a_s = attention_map(s, self.p)
            a_t = attention_map(t.detach(), self.p)
            total = total + (a_s - a_t).pow(2).mean()
        return total

    def extra_repr(self) -> str:
        return f'p={self.p}, loss_weight={self.loss_weight}'
