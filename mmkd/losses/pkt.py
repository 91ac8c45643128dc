"""Probabilistic knowledge transfer (PKT; Passalis and Tefas, ECCV 2018)."""
import torch

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError
from .functional import smoothed_kl_divergence


def cosine_affinities(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    r"""Conditional probabilities of a batch from the cosine kernel, row by row.

    .. math::
        \tilde{x}_i = \frac{x_i}{\|x_i\|_2 + \epsilon}, \qquad
        K_{ij} = \frac{1}{2}\big(\tilde{x}_i^\top \tilde{x}_j + 1\big), \qquad
        P_{ij} = \frac{K_{ij}}{\sum_{k=1}^{N} K_{ik}}

    As in the authors' code, :math:`\epsilon` is added to the norm and the
    row sums include :math:`k = i`.

    Args:
        x: (N, D) embeddings (any floating dtype; fp32 result); larger
            tensors are flattened from dimension 1.
        eps: :math:`\epsilon`.

    Returns:
        (N, N) matrix whose rows sum to one.
    """
    x = x.float().flatten(1)
    x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + eps)
    kernel = (x @ x.t() + 1.0) / 2.0
    return kernel / kernel.sum(1, keepdim=True)


@MODELS.register_module()
class PKTLoss(BaseDistillLoss):
    r"""Matches the student's batch affinity distributions to the teacher's.

    With :math:`P^T` and :math:`P^S` the conditional probabilities of
    :func:`cosine_affinities` on the teacher's and the student's embeddings
    of a batch of :math:`N` samples:

    .. math::
        \mathcal{L}_{PKT} = \frac{1}{N^2} \sum_{i=1}^{N} \sum_{j=1}^{N}
        P^T_{ij} \log \frac{P^T_{ij} + \epsilon}{P^S_{ij} + \epsilon}

    i.e. :math:`\mathrm{KL}(P^T_i \,\|\, P^S_i)` per sample (the teacher's
    distribution as the target), in the authors' form with
    :math:`\epsilon = 10^{-7}` inside the logarithm
    (:func:`~mmkd.losses.functional.smoothed_kl_divergence`), averaged over
    the :math:`N^2` entries as their ``torch.mean`` does. The embeddings may
    have different widths; the teacher's carry no gradient. The authors and
    RepDistiller distil the penultimate (globally pooled) features.

    The mean over :math:`N^2` entries makes the value scale as :math:`1/N`;
    the CRD benchmark's weight 30000 is for batches of 64.

    Fidelity: docs/fidelity.md#pkt

    Args:
        eps: :math:`\epsilon` of the norm and of the logarithm (1e-7).
        loss_weight: Factor on the loss (the paper trains on this loss alone:
            1; the CRD benchmark adds it to the cross-entropy with 30000).

    Example:
        >>> PKTLoss()(torch.randn(8, 64), torch.randn(8, 256)).shape
        torch.Size([])
    """

    def __init__(self, eps: float = 1e-7, loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if eps < 0:
            raise ValueError(f'PKTLoss needs eps >= 0; got {eps}.')
        self.eps = eps

    def loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if student.dim() < 2 or teacher.dim() < 2 or student.shape[0] != teacher.shape[0]:
            raise ShapeMismatchError(type(self).__name__, student.shape, teacher.shape,
                                     'batches of embeddings with the same batch size')
        p_s = cosine_affinities(student, self.eps)
        with torch.no_grad():
            p_t = cosine_affinities(teacher, self.eps)
        return smoothed_kl_divergence(p_t, p_s, self.eps, dim=1, reduction='sum') / p_t.numel()

    def extra_repr(self) -> str:
        return f'eps={self.eps}, loss_weight={self.loss_weight}'
