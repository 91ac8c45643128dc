"""Drawing and writing helpers shared by the synthetic VOC-format set writers.

Both :func:`~mmkd.datasets.synthetic_voc.make_synthetic_voc` (segmentation,
VOC 2012 layout) and :func:`~mmkd.datasets.synthetic_voc.make_synthetic_voc_det`
(detection, VOC 2007 layout) paint shapes of a colour family on a shaded,
noisy background and list each split in a text file. The order of the
random draws is part of each set's definition: the same seed writes the
same files.
"""
import os.path as osp
from typing import Iterable, Optional, Tuple

import numpy as np


def random_image_size(size: int, rng: np.random.Generator) -> Tuple[int, int]:
    """``(h, w)``, each drawn from ``size`` to ``1.25 * size`` pixels."""
    h, w = (int(rng.integers(size, size * 5 // 4 + 1)) for _ in range(2))
    return h, w


def shaded_background(h: int, w: int, rng: np.random.Generator,
                      brightness: Tuple[float, float], noise: float) -> np.ndarray:
    """A float ``(h, w, 3)`` image: a random colour, a linear shade and Gaussian noise.

    Args:
        h: Height in pixels.
        w: Width in pixels.
        rng: Random generator.
        brightness: Range of the base value of each channel.
        noise: Standard deviation of the per-pixel noise.
    """
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = rng.uniform(*brightness, size=3)
    slope = rng.uniform(-60, 60, size=(2, 3))
    image = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    image += rng.normal(0, noise, size=(h, w, 3))
    return image


def paint(image: np.ndarray, mask: np.ndarray, colour: Tuple[int, int, int],
          rng: np.random.Generator, noise: float) -> None:
    """Fill ``mask`` of ``image`` (in place) with a random tint of ``colour`` and noise."""
    tint = np.array(colour) + rng.normal(0, 25, size=3)
    image[mask] = tint + rng.normal(0, noise, size=(int(mask.sum()), 3))


def write_image_set(path: str, names: Iterable[str]) -> None:
    """A VOC ``ImageSets`` list: one image name a line."""
    with open(path, 'w') as f:
        f.write(''.join(f'{n}\n' for n in names))


def mark_prepared(root: str, description: str) -> None:
    """Leave ``root/.prepared`` saying what was written (tests and tools check for it)."""
    with open(osp.join(root, '.prepared'), 'w') as f:
        f.write(description + '\n')


def prepared_description(root: str) -> Optional[str]:
    """What ``mark_prepared`` left in ``root``; ``None`` if nothing was written there."""
    path = osp.join(root, '.prepared')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip()
