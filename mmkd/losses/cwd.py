"""Channel-wise distillation for dense prediction (Shu et al., ICCV 2021)."""
import torch

from mmkd.registry import MODELS

from .base import BaseDistillLoss
from .dense import RESIZE_MODES, match_sizes
from .functional import kl_divergence, tempered_log_softmax


@MODELS.register_module()
class ChannelWiseDivergence(BaseDistillLoss):
    r"""CWD: each channel's map, softmax-normalised over its spatial positions.

    From "Channel-wise Knowledge Distillation for Dense Prediction" (Shu
    et al., ICCV 2021). Each channel :math:`c` of an activation map
    :math:`y \in \mathbb{R}^{N \times C \times H \times W}` (logits of a
    segmentation head, or features) becomes a distribution over its
    :math:`HW` positions, and the student matches the teacher's:

    .. math::
        \phi(y_{n,c})_i = \frac{\exp(y_{n,c,i} / \tau)}{\sum_{j=1}^{HW} \exp(y_{n,c,j} / \tau)},
        \qquad
        \mathcal{L}_{cw} = \frac{\tau^2}{N C} \sum_{n=1}^{N} \sum_{c=1}^{C} \sum_{i=1}^{HW}
        \phi(y^T_{n,c})_i \, \log \frac{\phi(y^T_{n,c})_i}{\phi(y^S_{n,c})_i}

    The KL puts most weight on the positions where the teacher's channel
    is most active (the salient regions of each class). Channels must
    agree (map the student through a connector otherwise); maps of
    different spatial sizes are first brought to one size (see
    ``resize``), so a student with another output stride works. No labels
    are used, so ignored pixels count like the others. Computed in fp32.

    Fidelity: docs/fidelity.md#cwd

    Args:
        tau: Temperature :math:`\tau` (the paper uses 4 on logits).
        resize: ``'larger'``, ``'student'`` or ``'teacher'``: the size at
            which maps of different sizes are compared.
        loss_weight: Factor on the loss (the paper's :math:`\alpha`, 3 on
            logits).

    Example:
        >>> loss = ChannelWiseDivergence(tau=4.0, loss_weight=3.0)
        >>> loss(torch.randn(2, 19, 16, 16), torch.randn(2, 19, 32, 32))
    """

    def __init__(self, tau: float = 1.0, resize: str = 'larger', loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if tau <= 0:
            raise ValueError(f'ChannelWiseDivergence tau must be positive; got {tau}.')
        if resize not in RESIZE_MODES:
            raise ValueError(f'ChannelWiseDivergence resize must be one of {RESIZE_MODES}; '
                             f'got {resize!r}.')
        self.tau = tau
        self.resize = resize

    def loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student, teacher = match_sizes(student.float(), teacher.float(),
                                       type(self).__name__, self.resize)
        n, c = student.shape[:2]
        log_p_s = tempered_log_softmax(student.flatten(2), self.tau, dim=2)
        log_p_t = tempered_log_softmax(teacher.flatten(2), self.tau, dim=2)
        # Summed over the N * C channel distributions, each a KL over the HW positions.
        kl = kl_divergence(log_p_t, log_p_s, dim=2, target_is_log=True, reduction='sum')
        return kl * self.tau**2 / (n * c)

    def extra_repr(self) -> str:
        return f'tau={self.tau}, resize={self.resize!r}, loss_weight={self.loss_weight}'
