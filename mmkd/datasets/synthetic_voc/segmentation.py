"""Write a small synthetic segmentation set in the Pascal VOC 2012 layout.

Shapes of a few VOC classes (a class is a shape and a colour family) on
textured backgrounds, with VOC's conventions: JPEG images, palette PNG
labels in ``SegmentationClass`` (and grey-level ones in
``SegmentationClassAug``, as the SBD conversion writes them), a band of the
ignore label 255 along every object boundary, and split lists in
``ImageSets/Segmentation``. mmseg's ``PascalVOCDataset`` and the
``mmseg::_base_/datasets/pascal_voc12(_aug).py`` configs read it unchanged
when ``data_root`` points at ``<out-dir>/VOC2012``. The tests use it, and
so does the measured run of ``configs/segmentation/voc/README.md``.

Written by ``tools/dataset_converters/make_synthetic_voc.py``.
"""
import os
import os.path as osp
from typing import Dict, Tuple

import cv2
import numpy as np
from PIL import Image

from .scenes import (
    mark_prepared,
    paint,
    random_image_size,
    shaded_background,
    write_image_set,
)

IGNORE = 255
#: class index in VOC -> (shape, base RGB colour). 1 aeroplane, 2 bicycle,
#: 3 bird, 4 boat, 5 bottle.
SHAPES: Dict[int, Tuple[str, Tuple[int, int, int]]] = {
    1: ('disk', (200, 60, 50)),
    2: ('box', (60, 170, 60)),
    3: ('triangle', (70, 80, 200)),
    4: ('ring', (190, 170, 50)),
    5: ('bar', (150, 60, 170)),
}


def voc_palette() -> list:
    """The 256-colour palette of VOC's label PNGs (bit-interleaved RGB)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def _shape_mask(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    r = rng.uniform(0.12, 0.28) * min(h, w)
    center = (int(cx), int(cy))
    if kind == 'disk':
        cv2.circle(mask, center, int(r), 1, -1)
    elif kind == 'ring':
        cv2.circle(mask, center, int(r), 1, max(2, int(r / 2.5)))
    elif kind == 'box':
        cv2.rectangle(mask, (int(cx - r), int(cy - 0.7 * r)), (int(cx + r), int(cy + 0.7 * r)),
                      1, -1)
    elif kind == 'bar':
        angle = rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * 1.4 * r, np.sin(angle) * 1.4 * r
        cv2.line(mask, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 1,
                 max(2, int(r / 2.2)))
    else:  # triangle
        angle = rng.uniform(0, 2 * np.pi)
        pts = [(cx + r * np.cos(angle + k * 2 * np.pi / 3),
                cy + r * np.sin(angle + k * 2 * np.pi / 3)) for k in range(3)]
        cv2.fillPoly(mask, [np.array(pts, np.int32)], 1)
    return mask.astype(bool)


def make_sample(h: int, w: int, rng: np.random.Generator, max_objects: int = 3):
    """One (RGB image uint8 (h, w, 3), label map uint8 (h, w)) pair."""
    image = shaded_background(h, w, rng, brightness=(60, 160), noise=18)
    label = np.zeros((h, w), np.uint8)
    classes = sorted(SHAPES)
    for _ in range(rng.integers(1, max_objects + 1)):
        cls = int(rng.choice(classes))
        kind, colour = SHAPES[cls]
        mask = _shape_mask(kind, h, w, rng)
        if not mask.any():
            continue
        paint(image, mask, colour, rng, noise=22)
        label[mask] = cls
    mark_boundaries(label)
    return np.clip(image, 0, 255).astype(np.uint8), label


def mark_boundaries(label: np.ndarray, ignore: int = IGNORE) -> np.ndarray:
    """Set a 1-2 pixel band along every object's boundary to ``ignore``, in place, as VOC's
    labels have; returns ``label``."""
    edges = np.zeros(label.shape, bool)
    kernel = np.ones((3, 3), np.uint8)
    for cls in np.unique(label):
        if cls in (0, ignore):
            continue
        m = (label == cls).astype(np.uint8)
        edges |= (cv2.dilate(m, kernel) - cv2.erode(m, kernel)).astype(bool)
    label[edges] = ignore
    return label


def save_palette_png(label: np.ndarray, path: str) -> None:
    """A label map as VOC stores it: an 8-bit PNG with VOC's colour palette."""
    png = Image.fromarray(label, mode='P')
    png.putpalette(voc_palette())
    png.save(path)


def make_synthetic_voc(out_dir: str, num_train: int = 16, num_val: int = 8, num_aug: int = 8,
                       size: int = 64, seed: int = 0) -> str:
    """Write the set under ``out_dir/VOC2012``; returns that folder.

    Args:
        out_dir: Folder that plays ``data/VOCdevkit``.
        num_train: Images in ``train.txt`` (labels in SegmentationClass).
        num_val: Images in ``val.txt``.
        num_aug: Images in ``aug.txt`` (labels in SegmentationClassAug).
        size: Images are ``size`` to ``1.25 * size`` pixels on a side.
        seed: Random seed; the same seed writes the same files.
    """
    root = osp.join(out_dir, 'VOC2012')
    for sub in ('JPEGImages', 'SegmentationClass', 'SegmentationClassAug',
                osp.join('ImageSets', 'Segmentation')):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {'train': num_train, 'val': num_val, 'aug': num_aug}
    for split, count in splits.items():
        names = []
        for i in range(count):
            name = f'{split}_{i:05d}'
            h, w = random_image_size(size, rng)
            image, label = make_sample(h, w, rng)
            Image.fromarray(image).save(osp.join(root, 'JPEGImages', f'{name}.jpg'), quality=95)
            if split == 'aug':
                Image.fromarray(label, mode='L').save(
                    osp.join(root, 'SegmentationClassAug', f'{name}.png'))
            else:
                save_palette_png(label, osp.join(root, 'SegmentationClass', f'{name}.png'))
            names.append(name)
        write_image_set(osp.join(root, 'ImageSets', 'Segmentation', f'{split}.txt'), names)
    mark_prepared(root, f'{splits} size={size} seed={seed}')
    return root
