"""Helpers for losses on dense predictions (one value per pixel).

Segmentation students and teachers need not predict at the same size: a
student with output stride 16 against a teacher with stride 8 gives logits
half as large. :func:`match_sizes` brings both to one size, and
:func:`labels_from_samples` / :func:`valid_mask` read which pixels carry
the ignore label, at that size.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .base import ShapeMismatchError

RESIZE_MODES = ('larger', 'student', 'teacher')


def match_sizes(student: torch.Tensor, teacher: torch.Tensor, loss: str,
                resize: str = 'larger') -> Tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher maps of shape (N, C, H, W) at one spatial size.

    Args:
        student: Student map ``(N, C, Hs, Ws)``.
        teacher: Teacher map ``(N, C, Ht, Wt)``.
        loss: Name of the calling loss, for errors.
        resize: Which size both take: ``'larger'`` upsamples the coarser
            map to the finer one (no information is averaged away),
            ``'student'`` / ``'teacher'`` resize to that net's size.
            Resizing is bilinear with ``align_corners=False``, as in mmseg.

    Returns:
        ``(student, teacher)`` with equal shapes; gradients flow through
        the resizing of the student.

    Raises:
        ShapeMismatchError: if batch size or channels differ, or the maps
            are not 4-D.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f'{loss}: resize must be one of {RESIZE_MODES}; got {resize!r}.')
    if student.dim() != 4 or teacher.dim() != 4 or student.shape[:2] != teacher.shape[:2]:
        raise ShapeMismatchError(loss, student.shape, teacher.shape,
                                 '(N, C, H, W) maps with the same N and C (sizes may differ)')
    s_size, t_size = tuple(student.shape[2:]), tuple(teacher.shape[2:])
    if s_size == t_size:
        return student, teacher
    if resize == 'larger':
        resize = 'student' if s_size[0] * s_size[1] >= t_size[0] * t_size[1] else 'teacher'
    if resize == 'student':
        teacher = F.interpolate(teacher, size=s_size, mode='bilinear', align_corners=False)
    else:
        student = F.interpolate(student, size=t_size, mode='bilinear', align_corners=False)
    return student, teacher


def labels_from_samples(data_samples: Sequence) -> torch.Tensor:
    """The ground-truth label maps of a batch of mmseg ``SegDataSample``s.

    Args:
        data_samples: Samples with ``gt_sem_seg.data`` of shape ``(1, H, W)``
            (after mmseg's data preprocessor every map of a batch has the
            padded batch size).

    Returns:
        Long tensor ``(N, H, W)``.
    """
    maps = []
    for i, sample in enumerate(data_samples):
        seg = getattr(sample, 'gt_sem_seg', None)
        if seg is None:
            raise ValueError(f'data sample {i} has no gt_sem_seg: a loss with an ignore index '
                             'needs segmentation labels (mmseg SegDataSample with gt_sem_seg); '
                             'set ignore_index=None to use every pixel.')
        maps.append(seg.data.reshape(seg.data.shape[-2:]))
    if len({tuple(m.shape) for m in maps}) > 1:
        raise ValueError(f'label maps of one batch differ in size ({[tuple(m.shape) for m in maps]}'
                         '); pad them to one size (mmseg SegDataPreProcessor does).')
    return torch.stack(maps).long()


def valid_mask(data_samples: Optional[Sequence], ignore_index: Optional[int],
               size: Tuple[int, int], device: torch.device) -> Optional[torch.Tensor]:
    """Boolean ``(N, H, W)`` map of the pixels whose label is not ignored.

    The label maps are brought to ``size`` by nearest-neighbour sampling.
    Returns ``None`` (every pixel counts) without data samples (the
    distiller's dry run) or when ``ignore_index`` is ``None``.
    """
    if data_samples is None or ignore_index is None:
        return None
    labels = labels_from_samples(data_samples).to(device)
    if tuple(labels.shape[-2:]) != tuple(size):
        labels = F.interpolate(labels[:, None].float(), size=size, mode='nearest')[:, 0].long()
    return labels != ignore_index
