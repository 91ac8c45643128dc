"""Pair-wise distillation of structured KD (Liu et al., CVPR 2019)."""
from typing import Tuple

import torch
import torch.nn.functional as F

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError

#: Added to each position's channel norm before dividing by it (the authors' value).
NORM_EPS = 1e-8


def node_pool_kernel(height: int, width: int, scale: float) -> Tuple[int, int]:
    """Side lengths of the max-pooling window that turns a map into graph nodes.

    Each side is ``int(side * scale)`` (truncated, as the authors compute
    it), but at least 1: where the authors' window would be empty (a map
    side below ``1 / scale``) each position is its own node.

    Args:
        height: The map's height.
        width: The map's width.
        scale: A node's side as a share of the map's side, in ``(0, 1]``.

    Returns:
        ``(kernel_h, kernel_w)``; pooled with ``ceil_mode=True``, a map gives
        ``ceil(side / kernel)`` nodes along each side (2 x 2 at ``scale=0.5``
        for an even side).
    """
    return max(1, int(height * scale)), max(1, int(width * scale))


def position_similarity(feature: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    r"""Cosine similarities between all spatial positions of each image's map.

    .. math::
        a_{ij} = \frac{f_i^\top f_j}{(\|f_i\|_2 + \epsilon)(\|f_j\|_2 + \epsilon)}

    with :math:`f_i \in \mathbb{R}^C` the feature at position :math:`i`.
    The norms are constants for autograd (detached, as in the authors'
    code): the gradient reaches :math:`f` through the numerators only.
    Unlike :func:`~mmkd.losses.sp.similarity_matrix` (samples of a batch)
    and :func:`~mmkd.losses.pkt.cosine_affinities` (samples, turned into
    probabilities), the pairs here are positions within one image.

    Args:
        feature: (N, C, H, W) map of any floating dtype (fp32 result).
        eps: :math:`\epsilon`.

    Returns:
        (N, H * W, H * W) similarities, positions in row-major order.
    """
    f = feature.float()
    norm = f.pow(2).sum(1, keepdim=True).sqrt().detach() + eps
    f = (f / norm).flatten(2)  # (N, C, HW)
    return f.transpose(1, 2) @ f


@MODELS.register_module()
class PairWiseSimilarityLoss(BaseDistillLoss):
    r"""Structured KD's pair-wise term: match the teacher's similarities between regions.

    From "Structured Knowledge Distillation for Semantic Segmentation" (Liu
    et al., CVPR 2019), pair-wise distillation. A feature map is a graph
    whose nodes are its regions: max-pooled windows of ``scale`` times the
    map's sides (:func:`node_pool_kernel`, ``ceil_mode``, so a remainder
    forms a smaller node at the border). Each edge carries the cosine
    similarity :math:`a_{ij}` of two nodes' features
    (:func:`position_similarity`), and the student matches the teacher's:

    .. math::
        \mathcal{L}_{pa} = \frac{1}{N} \sum_{n=1}^{N} \frac{1}{(W' H')^2}
        \sum_{i \in \mathcal{R}} \sum_{j \in \mathcal{R}}
        \big(a^s_{n,ij} - a^t_{n,ij}\big)^2

    with :math:`\mathcal{R}` the :math:`W' \times H'` nodes of the
    teacher's pooled map. The paper's term is the inner sum over
    :math:`(W' H')^2`; the authors' code (``sim_dis_compute``) also divides
    by the batch size, as here. Since the similarities do not depend on
    the number of channels, the student's and the teacher's maps may have
    different widths, but they must have the same batch size and spatial
    size: the pooling window is computed from the teacher's map and
    applied to both. The authors compare the last feature map before the
    classifier (the output of PSPNet's bottleneck, after its dropout; in
    mmseg the input of ``decode_head.conv_seg``). The teacher's
    similarities carry no gradient; computed in fp32.

    Fidelity: docs/fidelity.md#structured-kd-pair-wise

    Args:
        scale: A node's side as a share of the map's side, in ``(0, 1]``
            (the authors' ``pool_scale``, 0.5: 2 x 2 nodes on an
            even-sized map).
        loss_weight: Factor on the loss (the paper's :math:`\lambda_2`; the
            authors' training script runs 0.5 (``--lambda-pa 0.5``), their
            argument default is 1).

    Raises:
        ShapeMismatchError: The maps are not 4-D or differ in batch size or
            spatial size.

    Example:
        >>> loss = PairWiseSimilarityLoss(scale=0.5, loss_weight=0.5)
        >>> loss(torch.randn(2, 32, 65, 65), torch.randn(2, 128, 65, 65)).shape
        torch.Size([])
    """

    def __init__(self, scale: float = 0.5, loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if not 0 < scale <= 1:
            raise ValueError(f'PairWiseSimilarityLoss scale must be in (0, 1]; got {scale}.')
        self.scale = scale

    def loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if (student.dim() != 4 or teacher.dim() != 4 or student.shape[0] != teacher.shape[0]
                or student.shape[2:] != teacher.shape[2:]):
            raise ShapeMismatchError(type(self).__name__, student.shape, teacher.shape,
                                     '(N, C, H, W) maps with the same N, H and W (channels '
                                     'may differ)')
        kernel = node_pool_kernel(teacher.shape[2], teacher.shape[3], self.scale)
        nodes_s = F.max_pool2d(student.float(), kernel, kernel, ceil_mode=True)
        with torch.no_grad():
            nodes_t = F.max_pool2d(teacher.detach().float(), kernel, kernel, ceil_mode=True)
            sim_t = position_similarity(nodes_t)
        sim_s = position_similarity(nodes_s)
        num_nodes = nodes_t.shape[2] * nodes_t.shape[3]
        return (sim_s - sim_t).pow(2).sum() / num_nodes**2 / teacher.shape[0]

    def extra_repr(self) -> str:
        return f'scale={self.scale}, loss_weight={self.loss_weight}'
