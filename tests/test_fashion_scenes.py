"""The Fashion-MNIST scenes (real photographed objects in the VOC 2007 layout): what is
written agrees with itself across annotations, reads in mmdet and mmseg, and is reproducible."""
import filecmp
import os
import os.path as osp
import re
import subprocess
import sys
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from mmkd.datasets.synthetic_voc import make_fashion_scenes, prepared_description
from mmkd.datasets.synthetic_voc.fashion_scenes import (
    CLASSES,
    IGNORE,
    ObjectPool,
    load_fashion_mnist,
    scenes_description,
    statistics,
)

from conftest import REPO


@pytest.fixture(scope='module')
def scenes(tmp_path_factory, fashion_mnist_root):
    out = str(tmp_path_factory.mktemp('scenes'))
    make_fashion_scenes(out, fashion_mnist_root, num_trainval=12, num_test=6, size=64, seed=3)
    return osp.join(out, 'VOC2007')


def objects_of(root, name):
    tree = ET.parse(osp.join(root, 'Annotations', f'{name}.xml'))
    size = tuple(int(tree.find('size').find(t).text) for t in ('height', 'width'))
    boxes = [(o.find('name').text, [int(o.find('bndbox').find(t).text) - 1
                                    for t in ('xmin', 'ymin', 'xmax', 'ymax')],
              o.find('difficult').text == '1') for o in tree.findall('object')]
    return size, boxes


def test_boxes_and_label_maps_describe_the_same_objects(scenes):
    names = open(osp.join(scenes, 'ImageSets', 'Main', 'trainval.txt')).read().split()
    assert names == open(osp.join(scenes, 'ImageSets', 'Segmentation',
                                  'trainval.txt')).read().split()
    assert len(names) == 12
    for name in names:
        (h, w), boxes = objects_of(scenes, name)
        image = Image.open(osp.join(scenes, 'JPEGImages', f'{name}.jpg'))
        label = np.array(Image.open(osp.join(scenes, 'SegmentationClass', f'{name}.png')))
        assert image.size == (w, h) and label.shape == (h, w)
        assert set(np.unique(label)) <= set(range(len(CLASSES) + 1)) | {IGNORE}
        assert boxes, f'{name} has no labelled object'
        for cls, (x1, y1, x2, y2), _ in boxes:
            assert 0 <= x1 <= x2 < w and 0 <= y1 <= y2 < h
            inside = label[y1:y2 + 1, x1:x2 + 1]
            # The box bounds the visible part of an object of its class (its border may be
            # the ignore band).
            assert ((inside == list(CLASSES).index(cls) + 1) | (inside == IGNORE)).any()
        # Every labelled class in the map has a box.
        present = {list(CLASSES)[v - 1] for v in np.unique(label) if 0 < v < IGNORE}
        assert present <= {cls for cls, _, _ in boxes}
    stats = statistics(scenes)
    assert stats['trainval']['images'] == 12 and stats['test']['images'] == 6
    assert sum(stats['trainval']['boxes'].values()) + stats['trainval']['difficult'] == sum(
        len(objects_of(scenes, n)[1]) for n in names)


def test_the_same_arguments_write_the_same_files(scenes, tmp_path, fashion_mnist_root):
    make_fashion_scenes(str(tmp_path), fashion_mnist_root, num_trainval=12, num_test=6,
                        size=64, seed=3)
    again = osp.join(str(tmp_path), 'VOC2007')
    for sub in ('JPEGImages', 'Annotations', 'SegmentationClass'):
        files = sorted(os.listdir(osp.join(scenes, sub)))
        assert files == sorted(os.listdir(osp.join(again, sub)))
        _, mismatch, errors = filecmp.cmpfiles(osp.join(scenes, sub), osp.join(again, sub),
                                               files, shallow=False)
        assert not mismatch and not errors, (sub, mismatch)
    assert prepared_description(again) == scenes_description(12, 6, 64, 3)


def test_each_photograph_is_used_once_and_splits_come_from_their_own_images(
        fashion_mnist_root):
    images, labels = load_fashion_mnist(fashion_mnist_root, 'test')
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    pool = ObjectPool(images, labels, np.random.default_rng(0))
    taken = [pool.take(7) for _ in range(50)]
    assert len({t.tobytes() for t in taken}) == 50
    with pytest.raises(FileNotFoundError, match='prepare_fashion_mnist.py'):
        load_fashion_mnist('/nonexistent', 'train')


def test_mmdet_and_mmseg_read_the_scenes_with_their_classes(scenes):
    from mmdet.datasets import VOCDataset
    from mmseg.datasets import BaseSegDataset
    data_root = osp.dirname(scenes)
    det = VOCDataset(data_root=data_root, ann_file='VOC2007/ImageSets/Main/test.txt',
                     data_prefix=dict(sub_data_root='VOC2007/'),
                     metainfo=dict(classes=tuple(CLASSES)), pipeline=[], test_mode=True)
    assert len(det) == 6 and det.metainfo['classes'] == tuple(CLASSES)
    labels = [i['bbox_label'] for d in det for i in d['instances']]
    assert labels and max(labels) < len(CLASSES)
    seg = BaseSegDataset(data_root=scenes, ann_file='ImageSets/Segmentation/test.txt',
                         data_prefix=dict(img_path='JPEGImages',
                                          seg_map_path='SegmentationClass'),
                         metainfo=dict(classes=('background', *CLASSES)), pipeline=[])
    assert len(seg) == 6 and seg[0]['seg_map_path'].endswith('test_00000.png')


def test_the_command_states_what_it_wrote(tmp_path, fashion_mnist_root):
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'dataset_converters', 'make_fashion_scenes.py'),
         '--out-dir', str(tmp_path), '--fashion-mnist', fashion_mnist_root, '--trainval', '4',
         '--test', '2', '--size', '48', '--preview', str(tmp_path / 'preview.png')],
        capture_output=True, text=True, cwd=REPO, check=True).stdout
    sides = re.search(r'trainval: 4 images, (\d+)-(\d+) px a side', out)
    assert sides and 48 <= int(sides[1]) <= int(sides[2]) <= 60
    assert 'test: 2 images' in out and 'boxes: tshirt' in out and 'difficult' in out
    assert Image.open(tmp_path / 'preview.png').size[0] > 0
