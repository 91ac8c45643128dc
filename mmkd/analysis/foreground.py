"""Foreground masks: which pixels, and which grid cells, belong to the object."""
from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F


def threshold_foreground(images: torch.Tensor, threshold: float = 10.0) -> torch.Tensor:
    """Pixels brighter than ``threshold`` in any channel (objects on black).

    The rule for Fashion-MNIST and MNIST, whose background is black.

    Args:
        images: (N, C, H, W) raw images (e.g. uint8 in [0, 255]).
        threshold: Pixels whose largest channel exceeds it are foreground.

    Returns:
        (N, H, W) bool mask.

    Example:
        >>> threshold_foreground(torch.tensor([[[[0, 200]]]]), 10)
        tensor([[[False,  True]]])
    """
    return images.float().amax(1) > threshold


def box_foreground(boxes: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Pixels inside any of the (x1, y1, x2, y2) boxes of one image.

    Args:
        boxes: (K, 4) boxes in pixels.
        size: (H, W) of the image.

    Returns:
        (H, W) bool mask.
    """
    height, width = size
    ys = torch.arange(height, device=boxes.device).view(-1, 1) + 0.5
    xs = torch.arange(width, device=boxes.device).view(1, -1) + 0.5
    mask = torch.zeros(height, width, dtype=torch.bool, device=boxes.device)
    for x1, y1, x2, y2 in boxes.tolist():
        mask |= (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
    return mask


def segmentation_foreground(labels: torch.Tensor, background: int = 0,
                            ignore_index: int = 255) -> torch.Tensor:
    """Pixels whose segmentation label is neither background nor ignored.

    Args:
        labels: (..., H, W) integer class map.
        background: The background class.
        ignore_index: The unlabelled value.

    Returns:
        Bool mask of the shape of ``labels``.
    """
    return (labels != background) & (labels != ignore_index)


def cell_foreground(mask: torch.Tensor, grid: Union[int, Tuple[int, int]],
                    min_fraction: float = 0.5) -> torch.Tensor:
    """Cells of a grid whose pixels are mostly foreground.

    Args:
        mask: (N, H, W) pixel mask.
        grid: Cells per side or (rows, cols).
        min_fraction: A cell is foreground when at least this fraction of
            its pixels are.

    Returns:
        (N, rows, cols) bool mask.

    Example:
        >>> mask = torch.zeros(1, 4, 4, dtype=torch.bool)
        >>> mask[:, :2, :2] = True
        >>> cell_foreground(mask, 2).int()
        tensor([[[1, 0],
                 [0, 0]]], dtype=torch.int32)
    """
    rows, cols = (grid, grid) if isinstance(grid, int) else tuple(grid)
    fraction = F.adaptive_avg_pool2d(mask.float().unsqueeze(1), (rows, cols)).squeeze(1)
    return fraction >= min_fraction
