"""FGD: focal and global distillation of detector features (Yang et al., CVPR 2022)."""
import logging
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import constant_init, kaiming_init
from torch import nn

from mmkd.registry import MODELS

from .base import BaseDistillLoss, ShapeMismatchError, TensorOrList
from .functional import paired, tempered_softmax

#: The image size ground-truth boxes are scaled from to a level's size: the authors'
#: ``img_shape`` (the resized image before padding) or the padded batch's size.
BOX_SCALES = ('img_shape', 'batch_input_shape')

#: Per image: its ground-truth boxes ``(n, 4)`` in pixels (or ``None``) and the
#: ``(height, width)`` they are scaled from.
ImageBoxes = Tuple[Optional[torch.Tensor], Optional[Tuple[int, int]]]


def fgd_attention(feat: torch.Tensor, temp: float) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""FGD's spatial and channel attention of an ``(N, C, H, W)`` feature.

    .. math::
        A^S = H W \cdot \mathrm{softmax}\Big(\frac{1}{T C} \sum_{c} |F_c|\Big), \qquad
        A^C = C \cdot \mathrm{softmax}\Big(\frac{1}{T H W} \sum_{i, j} |F_{i, j}|\Big)

    the softmax over the :math:`H W` positions and over the :math:`C`
    channels, so that each map averages to one.

    Returns:
        ``(spatial (N, H, W), channel (N, C))``, fp32.
    """
    n, c, h, w = feat.shape
    value = feat.abs()
    spatial = h * w * tempered_softmax(value.mean(1).reshape(n, -1), temp).reshape(n, h, w)
    channel = c * tempered_softmax(value.mean((2, 3)), temp)
    return spatial, channel


def box_masks(images: Sequence[ImageBoxes], size: Tuple[int, int],
              device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""FGD's scaled foreground mask and normalised background mask at one level.

    Each box is scaled from its image's size to the level's ``(H, W)`` and
    widened to whole cells (``floor`` of the top-left, ``ceil`` of the
    bottom-right corner, both rows and columns inclusive). A cell inside
    boxes takes the largest :math:`1 / (H_r W_r)` of them, :math:`H_r W_r`
    the cells of box :math:`r` so counted (boxes are expected inside their
    image, as mmdet's transforms leave them); every other cell is
    background, :math:`1 / N_{bg}` with :math:`N_{bg}` the image's
    background cells (all zero where boxes cover the whole map).

    Args:
        images: Per image, its boxes ``(x1, y1, x2, y2)`` in pixels and the
            ``(height, width)`` they are scaled from (``(None, None)``: no boxes).
        size: The level's ``(H, W)``.
        device: Where to build the masks.

    Returns:
        ``(foreground, background)``, each ``(N, H, W)`` fp32.
    """
    h, w = size
    fg = torch.zeros(len(images), h, w, device=device)
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    for i, (boxes, shape) in enumerate(images):
        if boxes is None or boxes.numel() == 0:
            continue
        boxes = boxes.to(device=device, dtype=torch.float32)
        img_h, img_w = shape
        left = torch.floor(boxes[:, 0] / img_w * w).long()
        right = torch.ceil(boxes[:, 2] / img_w * w).long()
        top = torch.floor(boxes[:, 1] / img_h * h).long()
        bottom = torch.ceil(boxes[:, 3] / img_h * h).long()
        area = 1.0 / (bottom + 1 - top) / (right + 1 - left)
        in_rows = (rows >= top[:, None]) & (rows <= bottom[:, None])
        in_cols = (cols >= left[:, None]) & (cols <= right[:, None])
        inside = in_rows[:, :, None] & in_cols[:, None, :]
        fg[i] = (inside * area[:, None, None]).amax(0)
    background = (fg == 0).float()
    bg = background / background.sum((1, 2), keepdim=True).clamp_min(1)
    return fg, bg


class GlobalContextBlock(nn.Module):
    r"""GCNet's context modelling and transform, added to the feature:

    .. math::
        \mathcal{R}(F) = F + W_{v2}\,\mathrm{ReLU}\Big(\mathrm{LN}\Big(W_{v1}
        \sum_{j=1}^{H W} \frac{e^{W_k F_j}}{\sum_m e^{W_k F_m}} F_j\Big)\Big)

    :math:`W_k`: 1x1 conv to one channel (Kaiming normal, fan-in, bias 0);
    :math:`W_{v1}`, :math:`W_{v2}`: 1x1 convs through ``channels // 2``
    with LayerNorm over those channels; :math:`W_{v2}` starts at zero, so
    :math:`\mathcal{R}` starts as the identity.

    Args:
        channels: Width of the feature.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv_mask = nn.Conv2d(channels, 1, kernel_size=1)
        self.channel_add = nn.Sequential(
            nn.Conv2d(channels, channels // 2, kernel_size=1),
            nn.LayerNorm([channels // 2, 1, 1]), nn.ReLU(inplace=True),
            nn.Conv2d(channels // 2, channels, kernel_size=1))
        kaiming_init(self.conv_mask, mode='fan_in')
        constant_init(self.channel_add[-1], val=0)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """The attention-pooled context ``(N, C, 1, 1)``."""
        n, c = x.shape[:2]
        weights = F.softmax(self.conv_mask(x).reshape(n, 1, -1), dim=2)  # (N, 1, HW)
        return torch.bmm(x.reshape(n, c, -1), weights.transpose(1, 2)).reshape(n, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.channel_add(self.context(x))


class FGDLevel(nn.Module):
    """The learnable parts of FGD at one level: the student's 1x1 alignment
    (a conv with bias where the widths differ, else the identity) and one
    :class:`GlobalContextBlock` per net, at the teacher's width."""

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__()
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
        self.align = (nn.Conv2d(student_channels, teacher_channels, kernel_size=1)
                      if student_channels != teacher_channels else nn.Identity())
        self.student_context = GlobalContextBlock(teacher_channels)
        self.teacher_context = GlobalContextBlock(teacher_channels)

    def extra_repr(self) -> str:
        return f'student_channels={self.student_channels}, teacher_channels={self.teacher_channels}'


@MODELS.register_module()
class FGDLoss(BaseDistillLoss):
    r"""FGD: focal (foreground / background, attention-weighted) and global
    (relation) imitation of detector features.

    From "Focal and Global Knowledge Distillation for Detectors" (Yang et
    al., CVPR 2022). At each FPN level, :math:`F^T` is the teacher's
    feature and :math:`F^S` the student's after :math:`f`, a 1x1 conv where
    the widths differ. With the attention maps of :func:`fgd_attention`,
    the masks of :func:`box_masks` from the ground-truth boxes (:math:`M`:
    foreground, :math:`S`: its :math:`1 / (H_r W_r)` scale, :math:`B`: the
    background's :math:`1 / N_{bg}`) and :math:`N` images:

    .. math::
        \mathcal{L}_{fea} = \frac{\alpha}{N} \sum_{k,i,j} M_{ij} S_{ij}
            A^S_{ij}(F^T) A^C_k(F^T) \big(F^T_{kij} - f(F^S)_{kij}\big)^2
          + \frac{\beta}{N} \sum_{k,i,j} B_{ij}
            A^S_{ij}(F^T) A^C_k(F^T) \big(F^T_{kij} - f(F^S)_{kij}\big)^2

    .. math::
        \mathcal{L}_{at} = \frac{\gamma}{N} \Big(\sum \big|A^S(F^T) - A^S(f(F^S))\big|
          + \sum \big|A^C(F^T) - A^C(f(F^S))\big|\Big)

    .. math::
        \mathcal{L}_{global} = \frac{\lambda}{N} \sum
            \big(\mathcal{R}_T(F^T) - \mathcal{R}_S(f(F^S))\big)^2,
        \qquad \mathcal{L}_{FGD} = \mathcal{L}_{fea} + \mathcal{L}_{at} + \mathcal{L}_{global}

    The teacher's attention weighs both nets' features; :math:`\mathcal{R}`
    is a :class:`GlobalContextBlock`, one for each net, both trained. The
    teacher's feature is detached. A list of levels gives the sum of the
    levels' losses, each with its own blocks (the authors build one loss per
    FPN level; the recipe does too, through the per-level ``'<fpn>'``
    record). Computed in fp32.

    **Boxes** come from the batch's ``data_samples`` (mmdet
    ``DetDataSample``: ``gt_instances.bboxes`` in the pixels of the resized
    image), which the distiller passes to a loss whose ``forward`` has that
    argument, scaled to each level's size from the image's ``img_shape``
    (the authors') or the padded ``batch_input_shape`` (``box_scale``).
    Without data samples (the distiller's build-time dry run) every image
    counts as one without boxes: all background.

    **Channels.** A loss is built from its config alone (unlike a
    connector, it is not given the dry run's values), so the blocks are
    built either at once, from ``student_channels`` and
    ``teacher_channels`` (as the authors' ``FeatureLoss``), or, when those
    are ``None``, from the widths of the first values the loss receives.
    In a distiller that first call is the build-time dry run, where every
    loss is computed once before the optimizer, checkpoint loading and DDP
    see the model: the blocks train with the student (they are parameters
    of the distiller's ``distill_losses``) and are not part of the exported
    student, and a recipe need not know the FPN's width. A loss used on its
    own should be given its channels (and ``num_levels``) before an
    optimizer is built over it.

    Fidelity: docs/fidelity.md#fgd

    Args:
        student_channels: Width of the student's levels (``None``: from the
            first call).
        teacher_channels: Width of the teacher's levels (``None``: from the
            first call).
        num_levels: The levels one call compares, with given channels.
        temp: Temperature :math:`T` of the attention (0.5).
        alpha_fgd: :math:`\alpha`, foreground (0.001).
        beta_fgd: :math:`\beta`, background (0.0005).
        gamma_fgd: :math:`\gamma`, attention (0.001; the authors' RetinaNet
            configs use 0.0005).
        lambda_fgd: :math:`\lambda`, global relation (0.000005).
        box_scale: ``'img_shape'`` (the authors') or ``'batch_input_shape'``:
            the size the boxes are scaled from to a level's size.
        loss_weight: Factor on the loss.

    Example:
        >>> loss = FGDLoss(student_channels=128, teacher_channels=256)
        >>> loss(torch.randn(2, 128, 16, 16), torch.randn(2, 256, 16, 16))
    """

    def __init__(self, student_channels: Optional[int] = None,
                 teacher_channels: Optional[int] = None, num_levels: int = 1,
                 temp: float = 0.5, alpha_fgd: float = 0.001, beta_fgd: float = 0.0005,
                 gamma_fgd: float = 0.001, lambda_fgd: float = 0.000005,
                 box_scale: str = 'img_shape', loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if (student_channels is None) != (teacher_channels is None):
            raise ValueError('FGDLoss takes both student_channels and teacher_channels, or '
                             'neither (then both come from the first values it receives).')
        if temp <= 0:
            raise ValueError(f'FGDLoss temp must be positive; got {temp}.')
        if num_levels < 1:
            raise ValueError(f'FGDLoss num_levels must be at least 1; got {num_levels}.')
        if box_scale not in BOX_SCALES:
            raise ValueError(f'FGDLoss box_scale must be one of {BOX_SCALES}; got '
                             f'{box_scale!r}.')
        self.temp = temp
        self.alpha_fgd = alpha_fgd
        self.beta_fgd = beta_fgd
        self.gamma_fgd = gamma_fgd
        self.lambda_fgd = lambda_fgd
        self.box_scale = box_scale
        self.levels = nn.ModuleList()
        if student_channels is not None:
            self.levels.extend(FGDLevel(student_channels, teacher_channels)
                               for _ in range(num_levels))

    def forward(self, student: TensorOrList, teacher: TensorOrList,
                data_samples: Optional[Sequence] = None) -> torch.Tensor:
        return self.loss_weight * self.loss(student, teacher, data_samples)

    def loss(self, student: TensorOrList, teacher: TensorOrList,
             data_samples: Optional[Sequence] = None) -> torch.Tensor:
        pairs = paired(student, teacher, type(self).__name__, 'levels')
        for s, t in pairs:
            if s.dim() != 4 or t.dim() != 4 or s.shape[0] != t.shape[0] or \
                    s.shape[2:] != t.shape[2:]:
                raise ShapeMismatchError(type(self).__name__, s.shape, t.shape,
                                         '(N, C, H, W) maps of the same N, H and W (widths '
                                         'may differ)')
        levels = self._levels_for(pairs)
        images = self._image_boxes(data_samples, pairs[0][0].shape[0])
        total = 0
        for level, (s, t) in zip(levels, pairs):
            total = total + self._level_loss(level, s, t, images)
        return total

    def _level_loss(self, level: FGDLevel, student: torch.Tensor, teacher: torch.Tensor,
                    images: Sequence[ImageBoxes]) -> torch.Tensor:
        s = level.align(student).float()
        t = teacher.detach().float()
        n, _, h, w = s.shape
        spatial_t, channel_t = fgd_attention(t, self.temp)
        spatial_s, channel_s = fgd_attention(s, self.temp)
        fg, bg = box_masks(images, (h, w), s.device)
        # The teacher's attention weighs both nets' features.
        weighted = (s - t).pow(2) * spatial_t[:, None] * channel_t[:, :, None, None]
        fg_loss = (weighted * fg[:, None]).sum() / n
        bg_loss = (weighted * bg[:, None]).sum() / n
        at_loss = ((channel_s - channel_t).abs().sum() + (spatial_s - spatial_t).abs().sum()) / n
        global_loss = F.mse_loss(level.student_context(s).float(),
                                 level.teacher_context(t).float(), reduction='sum') / n
        return (self.alpha_fgd * fg_loss + self.beta_fgd * bg_loss + self.gamma_fgd * at_loss
                + self.lambda_fgd * global_loss)

    def _levels_for(self, pairs: List[Tuple[torch.Tensor, torch.Tensor]]) -> List[FGDLevel]:
        """The blocks of each level, built here from the values' widths on the first call
        when no channels were given; refuses widths or a number of levels they do not fit."""
        name = type(self).__name__
        if len(self.levels) == 0:
            if torch.is_grad_enabled() and self.training:
                print_log(f'{name} builds its blocks on its first training call: an optimizer '
                          'built before does not hold them (give student_channels and '
                          'teacher_channels).', logger='current', level=logging.WARNING)
            device = pairs[0][0].device
            self.levels.extend(FGDLevel(s.shape[1], t.shape[1]).to(device) for s, t in pairs)
        if len(pairs) != len(self.levels):
            raise ValueError(f'{name} has blocks for {len(self.levels)} level(s) and received '
                             f'{len(pairs)}: set num_levels, or give one loss per level.')
        for k, (level, (s, t)) in enumerate(zip(self.levels, pairs)):
            if (s.shape[1], t.shape[1]) != (level.student_channels, level.teacher_channels):
                raise ValueError(
                    f'{name} level {k} was built for {level.student_channels} student and '
                    f'{level.teacher_channels} teacher channels; got {s.shape[1]} and '
                    f'{t.shape[1]}: set student_channels / teacher_channels to those widths.')
        return list(self.levels)

    def _image_boxes(self, data_samples: Optional[Sequence], batch: int) -> List[ImageBoxes]:
        """Each image's ground-truth boxes and the size they are scaled from."""
        name = type(self).__name__
        if data_samples is None:
            return [(None, None)] * batch
        if len(data_samples) != batch:
            raise ValueError(f'{name} received {len(data_samples)} data samples for a batch of '
                             f'{batch}.')
        images = []
        for i, sample in enumerate(data_samples):
            instances = getattr(sample, 'gt_instances', None)
            if instances is None or 'bboxes' not in instances:
                raise ValueError(f'{name} needs ground-truth boxes: data sample {i} has no '
                                 'gt_instances.bboxes (mmdet DetDataSample).')
            shape = sample.metainfo.get(self.box_scale)
            if shape is None:
                raise ValueError(f'{name} scales boxes from the image size {self.box_scale!r}; '
                                 f'data sample {i} has no such metainfo.')
            boxes = instances.bboxes
            images.append((getattr(boxes, 'tensor', boxes), tuple(shape[:2])))
        return images

    def extra_repr(self) -> str:
        return (f'temp={self.temp}, alpha_fgd={self.alpha_fgd}, beta_fgd={self.beta_fgd}, '
                f'gamma_fgd={self.gamma_fgd}, lambda_fgd={self.lambda_fgd}, '
                f'box_scale={self.box_scale!r}, loss_weight={self.loss_weight}')
