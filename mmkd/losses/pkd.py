"""PKD: feature imitation through the Pearson correlation (Cao et al., NeurIPS 2022)."""
import torch
import torch.nn.functional as F

from mmkd.registry import MODELS

from .base import BaseDistillLoss, TensorOrList
from .dense import RESIZE_MODES, match_sizes
from .functional import paired, z_score


def standardize_channels(feat: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    r"""Each channel of an (N, C, H, W) map to zero mean and unit standard
    deviation over the batch and positions: :math:`(x - \mu_c) / (\sigma_c + \epsilon)`,
    with the unbiased :math:`\sigma_c` of the :math:`N H W` values of channel :math:`c`."""
    return z_score(feat, [d for d in range(feat.dim()) if d != 1], eps)


@MODELS.register_module()
class PKDLoss(BaseDistillLoss):
    r"""PKD: MSE between channel-standardised features, i.e. one minus their
    Pearson correlation.

    From "PKD: General Distillation Framework for Object Detectors via
    Pearson Correlation Coefficient" (Cao et al., NeurIPS 2022). Each
    channel :math:`c` of the student's and the teacher's FPN feature is
    standardised over the batch and positions (:func:`standardize_channels`),
    :math:`\hat F = (F - \mu_c) / (\sigma_c + 10^{-6})`, and

    .. math::
        \mathcal{L}_{PKD} = \frac{1}{2} \cdot \frac{1}{N C H W}
        \sum \big(\hat F^S - \hat F^T\big)^2

    which, for standardised features, is :math:`1 - r` with :math:`r` the
    Pearson correlation of the two features (up to the :math:`(n-1)/n` of
    the unbiased variance). Magnitude differences between the FPNs of
    heterogeneous detectors drop out. A student map of another size is
    resized to the teacher's (bilinear), as the authors' ``resize_stu``.
    One map, or a list of levels whose losses are summed.

    As MMRazor's ``PKDLoss`` (the authors' code): the same standardisation,
    ``eps``, ``/ 2`` and resizing.

    Fidelity: docs/fidelity.md#pkd

    Args:
        loss_weight: Factor on the loss (the authors: 6 for Faster R-CNN
            students, 10 for RetinaNet).
        resize: Which map a size difference resizes (``'teacher'``: the
            student's map to the teacher's size, the authors' default).
    """

    def __init__(self, loss_weight: float = 1.0, resize: str = 'teacher'):
        super().__init__(loss_weight)
        if resize not in RESIZE_MODES:
            raise ValueError(f'PKDLoss resize must be one of {RESIZE_MODES}; got {resize!r}.')
        self.resize = resize

    def loss(self, student: TensorOrList, teacher: TensorOrList) -> torch.Tensor:
        total = 0
        for s, t in paired(student, teacher, type(self).__name__, 'levels'):
            s, t = match_sizes(s.float(), t.float(), type(self).__name__, self.resize)
            total = total + F.mse_loss(standardize_channels(s), standardize_channels(t)) / 2
        return total

    def extra_repr(self) -> str:
        return f'loss_weight={self.loss_weight}, resize={self.resize!r}'
