"""Write a small synthetic detection set in the Pascal VOC 2007 layout.

Each image is a noisy, shaded background with one to three objects of
three VOC classes, each class a shape with its own colour family:

* ``car``: a wide filled rectangle, red;
* ``dog``: a filled ellipse, green;
* ``person``: a tall filled triangle, blue.

Objects are 20 to 50 % of the shorter image side; colours, textures and
positions vary and objects may overlap. The layout is VOC's:
``VOC2007/JPEGImages/*.jpg``, ``VOC2007/Annotations/*.xml`` (1-based pixel
boxes, ``difficult`` 0) and ``VOC2007/ImageSets/Main/{trainval,test}.txt``,
so mmdet's ``VOCDataset`` and the ``mmdet::pascal_voc`` dataset settings
read it when ``data_root`` points at the output folder. The tests of
``configs/detection`` and the measured run of its README use it.

Written by ``tools/dataset_converters/make_synthetic_voc_det.py``.
"""
import os
import os.path as osp
from typing import List, Optional, Tuple
from xml.etree import ElementTree as ET

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

#: VOC class name -> (shape, base RGB colour).
CLASSES = {
    'car': ('rectangle', (200, 50, 40)),
    'dog': ('ellipse', (50, 170, 60)),
    'person': ('triangle', (50, 70, 200)),
}

Box = Tuple[int, int, int, int]  # x1, y1, x2, y2, 0-based, inclusive


def _draw(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask of one object of ``kind``."""
    side = min(h, w)
    bw = rng.uniform(0.2, 0.5) * side
    bh = rng.uniform(0.2, 0.5) * side
    if kind == 'rectangle':
        bh = min(bh, 0.8 * bw)  # cars are wider than tall
    elif kind == 'triangle':
        bw = min(bw, 0.8 * bh)  # people are taller than wide
    x1 = rng.uniform(0, w - bw)
    y1 = rng.uniform(0, h - bh)
    x2, y2 = x1 + bw, y1 + bh
    mask = np.zeros((h, w), np.uint8)
    if kind == 'rectangle':
        cv2.rectangle(mask, (int(x1), int(y1)), (int(x2), int(y2)), 1, -1)
    elif kind == 'ellipse':
        cv2.ellipse(mask, (int((x1 + x2) / 2), int((y1 + y2) / 2)), (int(bw / 2), int(bh / 2)),
                    0, 0, 360, 1, -1)
    else:
        pts = np.array([((x1 + x2) / 2, y1), (x1, y2), (x2, y2)], np.int32)
        cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def make_sample(h: int, w: int, rng: np.random.Generator,
                max_objects: int = 3) -> Tuple[np.ndarray, List[Tuple[str, Box]]]:
    """One RGB uint8 image ``(h, w, 3)`` and its ``(class, box)`` list."""
    image = shaded_background(h, w, rng, brightness=(60, 170), noise=20)
    objects = []
    names = sorted(CLASSES)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        name = names[int(rng.integers(len(names)))]
        kind, colour = CLASSES[name]
        mask = _draw(kind, h, w, rng)
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            continue
        paint(image, mask, colour, rng, noise=20)
        objects.append((name, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))))
    return np.clip(image, 0, 255).astype(np.uint8), objects


def annotation_xml(filename: str, h: int, w: int, objects: List[Tuple[str, Box]],
                   difficult: Optional[List[bool]] = None, segmented: bool = False) -> str:
    """The VOC annotation of one image (boxes written 1-based, as VOC does).

    Args:
        filename: The image's file name.
        h: Image height.
        w: Image width.
        objects: ``(class name, (x1, y1, x2, y2))`` of each object, 0-based inclusive.
        difficult: VOC's ``difficult`` flag of each object (left out of the mAP); all 0 when
            not given.
        segmented: Whether the image has a label map in ``SegmentationClass``.
    """
    difficult = difficult or [False] * len(objects)
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = 'VOC2007'
    ET.SubElement(root, 'filename').text = filename
    size = ET.SubElement(root, 'size')
    for tag, value in (('width', w), ('height', h), ('depth', 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, 'segmented').text = str(int(segmented))
    for (name, (x1, y1, x2, y2)), hard in zip(objects, difficult):
        obj = ET.SubElement(root, 'object')
        ET.SubElement(obj, 'name').text = name
        ET.SubElement(obj, 'pose').text = 'Unspecified'
        ET.SubElement(obj, 'truncated').text = '0'
        ET.SubElement(obj, 'difficult').text = str(int(hard))
        box = ET.SubElement(obj, 'bndbox')
        for tag, value in (('xmin', x1 + 1), ('ymin', y1 + 1), ('xmax', x2 + 1),
                           ('ymax', y2 + 1)):
            ET.SubElement(box, tag).text = str(value)
    return ET.tostring(root, encoding='unicode')


def set_description(num_trainval: int, num_test: int, size: int, seed: int) -> str:
    """What ``VOC2007/.prepared`` says of a set written with these arguments."""
    return f'trainval={num_trainval} test={num_test} size={size} seed={seed}'


def make_synthetic_voc_det(out_dir: str, num_trainval: int = 16, num_test: int = 8,
                           size: int = 96, seed: int = 0) -> str:
    """Write the set under ``out_dir/VOC2007``; returns ``out_dir``.

    Args:
        out_dir: Folder that plays ``data/VOCdevkit``.
        num_trainval: Images in ``ImageSets/Main/trainval.txt``.
        num_test: Images in ``ImageSets/Main/test.txt``.
        size: Images are ``size`` to ``1.25 * size`` pixels on a side.
        seed: Random seed; the same seed writes the same files.

    Returns:
        ``out_dir`` (the ``data_root`` of a VOC config).
    """
    root = osp.join(out_dir, 'VOC2007')
    for sub in ('JPEGImages', 'Annotations', osp.join('ImageSets', 'Main')):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in (('trainval', num_trainval), ('test', num_test)):
        names = []
        for i in range(count):
            name = f'{split}_{i:05d}'
            h, w = random_image_size(size, rng)
            image, objects = make_sample(h, w, rng)
            Image.fromarray(image).save(osp.join(root, 'JPEGImages', f'{name}.jpg'), quality=95)
            with open(osp.join(root, 'Annotations', f'{name}.xml'), 'w') as f:
                f.write(annotation_xml(f'{name}.jpg', h, w, objects))
            names.append(name)
        write_image_set(osp.join(root, 'ImageSets', 'Main', f'{split}.txt'), names)
    mark_prepared(root, set_description(num_trainval, num_test, size, seed))
    return out_dir
