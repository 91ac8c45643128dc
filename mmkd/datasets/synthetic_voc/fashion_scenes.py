"""Scenes of real photographed objects in the Pascal VOC 2007 layout, for detection and
segmentation benchmarks that run on a CPU.

The coloured shapes of :mod:`~mmkd.datasets.synthetic_voc.detection` and
:mod:`~mmkd.datasets.synthetic_voc.segmentation` are too easy to separate
distillation methods. Here every object is a real product photograph from
Fashion-MNIST (Xiao et al., 2017; Debian's ``dataset-fashion-mnist``, no
download), so shapes, textures and intra-class variation are those of real
items:

* **Objects**: six labelled classes (:data:`CLASSES`), each instance a
  different photograph, scaled to :data:`OBJECT_SCALE` of the shorter image
  side with its own aspect jitter, coloured and pasted at a random position;
  later objects occlude earlier ones. The photograph's grey levels shade a
  colour drawn around its class's typical hue (:data:`HUES`, jittered, with
  random saturation and brightness), as clothes of a kind often share
  colours: colour is a cue, never the answer.
* **Distractors**: the other four Fashion-MNIST classes (pullover, coat,
  shirt, ankle boot), close look-alikes of the labelled ones, pasted the
  same way in the hue of the class each resembles (:data:`DISTRACTORS`) but
  left unlabelled: background in the label maps and no boxes. Telling a
  shirt from a T-shirt or an ankle boot from a sneaker takes shape, not
  colour.
* **Backgrounds**: a greyish shaded floor with a faint sinusoidal grating of
  random period and angle, blurred blotches and pixel noise.
* **Annotations**: boxes from each object's visible silhouette (the
  photograph's non-black pixels) in VOC XML, an object less than
  :data:`VISIBLE_DIFFICULT` visible flagged ``difficult`` (VOC leaves those
  out of the mAP); palette label PNGs with 255 along every object boundary,
  as VOC's.

Train-split objects come from Fashion-MNIST's training images and test-split
objects from its test images, each photograph used at most once, so no
object is seen in both splits. One folder serves both tasks, as VOC 2007
does: ``VOC2007/JPEGImages``, ``Annotations`` (mmdet's ``VOCDataset``),
``SegmentationClass`` (mmseg's ``BaseSegDataset``), ``ImageSets/Main`` and
``ImageSets/Segmentation`` with the same ``trainval`` / ``test`` lists. The
same arguments write the same files (the random draws' order is part of the
definition); ``VOC2007/.prepared`` states them.

Written by ``tools/dataset_converters/make_fashion_scenes.py``.
"""
import colorsys
import os
import os.path as osp
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from .detection import Box, annotation_xml
from .scenes import mark_prepared, random_image_size, write_image_set
from .segmentation import IGNORE, mark_boundaries, save_palette_png

#: Labelled classes: name -> Fashion-MNIST label. Label-map value = position + 1.
CLASSES: Dict[str, int] = {
    'tshirt': 0, 'trouser': 1, 'dress': 3, 'sandal': 5, 'sneaker': 7, 'bag': 8}
#: Typical hue (HSV, 0..1) of each labelled class.
HUES: Dict[str, float] = {
    'tshirt': 0.0, 'trouser': 0.62, 'dress': 0.83, 'sandal': 0.08, 'sneaker': 0.33, 'bag': 0.16}
#: Unlabelled look-alikes pasted as clutter, Fashion-MNIST label -> the class whose hue it
#: takes: pullover and shirt look like T-shirts, a coat like a dress, an ankle boot like a
#: sneaker.
DISTRACTORS: Dict[int, str] = {2: 'tshirt', 4: 'dress', 6: 'tshirt', 9: 'sneaker'}
#: Hue jitter around a class's typical hue, and the ranges of saturation and brightness.
HUE_JITTER, SATURATION, VALUE = 0.06, (0.45, 1.0), (0.55, 1.0)
#: An object's longer side, as a fraction of the image's shorter side.
OBJECT_SCALE = (0.35, 0.7)
#: Objects with less than this share of their silhouette visible are ``difficult``.
VISIBLE_DIFFICULT = 0.4
#: A photograph's pixel belongs to the object above this grey level (of 255),
#: after a 3x3 closing that fills dark seams inside the item.
SILHOUETTE_LEVEL = 12


def read_idx(path: str) -> np.ndarray:
    """An IDX file (the MNIST format: big-endian header, unsigned bytes) as an array."""
    with open(path, 'rb') as f:
        data = f.read()
    magic = int.from_bytes(data[:4], 'big')
    if magic >> 8 != 0x08:
        raise ValueError(f'{path} is not an unsigned-byte IDX file (magic {magic:#x}).')
    dims = magic & 0xff
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_fashion_mnist(root: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(images (N, 28, 28) uint8, labels (N,))`` of Fashion-MNIST's ``'train'`` or ``'test'``
    split, from the folder ``tools/dataset_converters/prepare_fashion_mnist.py`` writes."""
    prefix = {'train': 'train', 'test': 't10k'}[split]
    paths = [osp.join(root, f'{prefix}-{kind}') for kind in ('images-idx3-ubyte',
                                                              'labels-idx1-ubyte')]
    missing = [p for p in paths if not osp.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f'Fashion-MNIST is not in {root} (missing {", ".join(missing)}): run '
            '`make data` or `python tools/dataset_converters/prepare_fashion_mnist.py '
            f'--out-dir {root}`.')
    return read_idx(paths[0]), read_idx(paths[1])


class ObjectPool:
    """The photographs of each Fashion-MNIST class in a random order, each handed out once."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
        self.images = images
        self._order = {int(c): list(rng.permutation(np.flatnonzero(labels == c)))
                       for c in np.unique(labels)}

    def take(self, label: int) -> np.ndarray:
        if not self._order[label]:
            raise ValueError(f'Fashion-MNIST has no photograph of class {label} left: ask '
                             'for fewer images.')
        return self.images[self._order[label].pop()]


def background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A float ``(h, w, 3)`` greyish floor: a shaded grey with a slight colour cast, a faint
    grating, blurred blotches and noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    grey = rng.uniform(70, 180) + (yy * rng.uniform(-40, 40) + xx * rng.uniform(-40, 40)) / max(
        h, w)
    image = grey[..., None] + rng.uniform(-15, 15, size=3)
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 24)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
    image += np.sin(phase)[..., None] * rng.uniform(0, 15)
    blotches = cv2.GaussianBlur(rng.normal(0, 1, size=(h, w)), (0, 0), rng.uniform(2, 6))
    image += (blotches / (blotches.std() + 1e-6) * rng.uniform(5, 20))[..., None]
    return image + rng.normal(0, 5, size=(h, w, 3))


def object_colour(hue: float, rng: np.random.Generator) -> np.ndarray:
    """An RGB colour (0..255) around ``hue``."""
    rgb = colorsys.hsv_to_rgb((hue + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 1.0,
                              rng.uniform(*SATURATION), rng.uniform(*VALUE))
    return np.array(rgb) * 255


class PastedObject(NamedTuple):
    """An object pasted into a scene: its class, its full silhouette and its box."""
    label: Optional[int]  # position in CLASSES + 1; None for a distractor
    silhouette: np.ndarray
    box: Box


def paste(image: np.ndarray, photo: np.ndarray, hue: float,
          rng: np.random.Generator) -> np.ndarray:
    """Paste one photograph into ``image`` (in place), coloured around ``hue``, at a random
    scale, aspect and position; returns its silhouette, a boolean ``(h, w)`` mask."""
    h, w = image.shape[:2]
    side = rng.uniform(*OBJECT_SCALE) * min(h, w)
    aspect = np.exp(rng.uniform(-0.2, 0.2))
    oh, ow = max(4, int(round(side * aspect))), max(4, int(round(side / aspect)))
    grey = cv2.resize(photo, (ow, oh), interpolation=cv2.INTER_LINEAR)
    inside = cv2.morphologyEx((grey > SILHOUETTE_LEVEL).astype(np.uint8), cv2.MORPH_CLOSE,
                              np.ones((3, 3), np.uint8)).astype(bool)
    y0, x0 = int(rng.integers(-oh // 4, h - 3 * oh // 4 + 1)), int(
        rng.integers(-ow // 4, w - 3 * ow // 4 + 1))
    ys, xs = slice(max(y0, 0), min(y0 + oh, h)), slice(max(x0, 0), min(x0 + ow, w))
    crop = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
    mask = np.zeros((h, w), bool)
    mask[ys, xs] = inside[crop]
    tint = object_colour(hue, rng)
    shade = 0.3 + 0.7 * grey[crop][..., None] / 255.0
    region = image[ys, xs]
    region[inside[crop]] = (tint * shade + rng.normal(0, 6, size=shade.shape))[inside[crop]]
    return mask


def make_scene(h: int, w: int, pool: ObjectPool, rng: np.random.Generator,
               max_objects: int = 4, max_distractors: int = 1):
    """One scene: ``(RGB uint8 image, label map uint8, [(class name, box)], [difficult])``."""
    names = list(CLASSES)
    image = background(h, w, rng)
    label = np.zeros((h, w), np.uint8)
    kinds = [int(rng.integers(len(names))) + 1
             for _ in range(int(rng.integers(1, max_objects + 1)))]
    kinds += [None] * int(rng.integers(0, max_distractors + 1))
    pasted: List[PastedObject] = []
    for k in (kinds[i] for i in rng.permutation(len(kinds))):
        if k:
            source, hue = CLASSES[names[k - 1]], HUES[names[k - 1]]
        else:
            source = list(DISTRACTORS)[int(rng.integers(len(DISTRACTORS)))]
            hue = HUES[DISTRACTORS[source]]
        mask = paste(image, pool.take(source), hue, rng)
        if not mask.any():
            continue
        label[mask] = k or 0
        ys, xs = np.nonzero(mask)
        pasted.append(PastedObject(k, mask, (int(xs.min()), int(ys.min()), int(xs.max()),
                                             int(ys.max()))))
    objects, difficult = [], []
    for i, obj in enumerate(pasted):
        if obj.label is None:
            continue
        visible = obj.silhouette.copy()
        for later in pasted[i + 1:]:
            visible &= ~later.silhouette
        if not visible.any():
            continue  # wholly hidden: nothing of it in the image
        ys, xs = np.nonzero(visible)
        objects.append((names[obj.label - 1], (int(xs.min()), int(ys.min()), int(xs.max()),
                                               int(ys.max()))))
        difficult.append(visible.sum() < VISIBLE_DIFFICULT * obj.silhouette.sum())
    mark_boundaries(label, IGNORE)
    return np.clip(image, 0, 255).astype(np.uint8), label, objects, difficult


def scenes_description(num_trainval: int, num_test: int, size: int, seed: int) -> str:
    """What ``VOC2007/.prepared`` says of a set written with these arguments."""
    return (f'fashion_scenes trainval={num_trainval} test={num_test} size={size} seed={seed} '
            f'classes={",".join(CLASSES)}')


def make_fashion_scenes(out_dir: str, fashion_mnist_root: str, num_trainval: int = 1000,
                        num_test: int = 300, size: int = 96, seed: int = 0,
                        progress: Optional[Callable[[int, int], None]] = None) -> str:
    """Write the set under ``out_dir/VOC2007``; returns ``out_dir`` (a VOC ``data_root``).

    Args:
        out_dir: Folder that plays ``data/VOCdevkit``.
        fashion_mnist_root: Folder with Fashion-MNIST's four IDX files.
        num_trainval: Scenes in ``trainval`` (objects from Fashion-MNIST's training set).
        num_test: Scenes in ``test`` (objects from its test set).
        size: Scenes are ``size`` to ``1.25 * size`` pixels on a side.
        seed: Random seed; the same arguments write the same files.
        progress: Called with ``(done, total)`` after each scene.
    """
    root = osp.join(out_dir, 'VOC2007')
    for sub in ('JPEGImages', 'Annotations', 'SegmentationClass', osp.join('ImageSets', 'Main'),
                osp.join('ImageSets', 'Segmentation')):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    rng = np.random.default_rng(seed)
    total, done = num_trainval + num_test, 0
    for split, source, count in (('trainval', 'train', num_trainval),
                                 ('test', 'test', num_test)):
        pool = ObjectPool(*load_fashion_mnist(fashion_mnist_root, source), rng)
        names = []
        for i in range(count):
            name = f'{split}_{i:05d}'
            h, w = random_image_size(size, rng)
            image, label, objects, difficult = make_scene(h, w, pool, rng)
            Image.fromarray(image).save(osp.join(root, 'JPEGImages', f'{name}.jpg'), quality=95)
            save_palette_png(label, osp.join(root, 'SegmentationClass', f'{name}.png'))
            with open(osp.join(root, 'Annotations', f'{name}.xml'), 'w') as f:
                f.write(annotation_xml(f'{name}.jpg', h, w, objects, difficult, segmented=True))
            names.append(name)
            done += 1
            if progress is not None:
                progress(done, total)
        for lists in ('Main', 'Segmentation'):
            write_image_set(osp.join(root, 'ImageSets', lists, f'{split}.txt'), names)
    mark_prepared(root, scenes_description(num_trainval, num_test, size, seed))
    return out_dir


def preview(root: str, names: Sequence[str], path: str, columns: int = 4) -> None:
    """A PNG of scenes (boxes drawn, difficult ones dashed grey) beside their label maps."""
    from xml.etree import ElementTree as ET
    tiles = []
    for name in names:
        image = np.array(Image.open(osp.join(root, 'JPEGImages', f'{name}.jpg')).convert('RGB'))
        label = Image.open(osp.join(root, 'SegmentationClass', f'{name}.png')).convert('RGB')
        for obj in ET.parse(osp.join(root, 'Annotations', f'{name}.xml')).findall('object'):
            b = [int(obj.find('bndbox').find(t).text) - 1 for t in ('xmin', 'ymin', 'xmax', 'ymax')]
            colour = (160, 160, 160) if obj.find('difficult').text == '1' else (255, 255, 0)
            cv2.rectangle(image, (b[0], b[1]), (b[2], b[3]), colour, 1)
        label = np.array(label.resize(image.shape[1::-1], Image.NEAREST))
        tiles.append(np.concatenate([image, label], axis=1))
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0] + 4), (0, w - t.shape[1] + 4), (0, 0)),
                    constant_values=255) for t in tiles]
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def statistics(root: str) -> Dict[str, dict]:
    """Per split: images, their size range, boxes per class (difficult ones apart) and the
    share of labelled pixels per class, read back from the files under ``root``."""
    from xml.etree import ElementTree as ET
    stats = {}
    for split in ('trainval', 'test'):
        with open(osp.join(root, 'ImageSets', 'Main', f'{split}.txt')) as f:
            names = f.read().split()
        boxes = {c: 0 for c in CLASSES}
        difficult, sides, pixels = 0, [], np.zeros(len(CLASSES) + 1)
        for name in names:
            tree = ET.parse(osp.join(root, 'Annotations', f'{name}.xml'))
            sides += [int(tree.find('size').find(t).text) for t in ('width', 'height')]
            for obj in tree.findall('object'):
                if obj.find('difficult').text == '1':
                    difficult += 1
                else:
                    boxes[obj.find('name').text] += 1
            label = np.array(Image.open(osp.join(root, 'SegmentationClass', f'{name}.png')))
            pixels += np.bincount(label[label != IGNORE].ravel(), minlength=len(pixels))
        stats[split] = dict(images=len(names), sides=(min(sides), max(sides)), boxes=boxes,
                            difficult=difficult,
                            pixel_share={c: float(pixels[i + 1] / pixels.sum())
                                         for i, c in enumerate(CLASSES)})
    return stats
