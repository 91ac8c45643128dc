"""A user's config inherits an ``mmkd::`` config and reuses its top-level pieces.

MMEngine stamps ``_scope_='mmkd'`` on the top-level pieces of a config loaded through
``mmkd::`` (pipelines, evaluators, visualizers); mmkd's registries must build them as the
task package would.
"""
import os.path as osp
import sys

import pytest
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mmkd.distillers import load_config
from mmkd.registry import METRICS, TRANSFORMS, VISUALIZERS

from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools', 'dataset_converters'))
from make_synthetic_voc import make_synthetic_voc  # noqa: E402
from make_synthetic_voc_det import make_synthetic_voc_det  # noqa: E402


def write(tmp_path, text: str) -> str:
    path = str(tmp_path / 'user_config.py')
    with open(path, 'w') as f:
        f.write(text)
    return path


def test_a_classification_pipeline_reused_from_an_mmkd_config_builds(tmp_path,
                                                                     fashion_mnist_root):
    """The configuration of the issue, verbatim but for the data root."""
    cfg = load_config(write(tmp_path, f'''
_base_ = ['mmkd::kd/kd_resnet20_resnet8_fashionmnist.py']
train_dataloader = dict(dataset=dict(_delete_=True, type='mmpretrain.FashionMNIST',
                                     data_root={fashion_mnist_root!r}, split='train',
                                     download=False, pipeline={{{{_base_.train_pipeline}}}},
                                     indices=8))
'''))
    assert cfg.train_pipeline[0]['_scope_'] == 'mmkd'  # what MMEngine stamps
    loader = dict(cfg.train_dataloader, num_workers=0, persistent_workers=False, batch_size=4)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        batch = next(iter(Runner.build_dataloader(loader)))
    assert tuple(batch['inputs'][0].shape) == (1, 28, 28)
    assert len(batch['data_samples']) == 4


def test_a_detection_pipeline_evaluator_and_visualizer_reused_build(tmp_path):
    root = make_synthetic_voc_det(str(tmp_path / 'VOCdevkit'), num_trainval=2, num_test=1,
                                  size=64)
    cfg = load_config(write(tmp_path, f'''
_base_ = ['mmkd::detection/voc/fpn_retinanet_r50_r18_voc0712.py']
train_dataloader = dict(dataset=dict(_delete_=True, type='mmdet.VOCDataset',
                                     data_root={root!r},
                                     ann_file='VOC2007/ImageSets/Main/trainval.txt',
                                     data_prefix=dict(sub_data_root='VOC2007/'),
                                     pipeline={{{{_base_.train_pipeline}}}}))
val_evaluator = {{{{_base_.val_evaluator}}}}
visualizer = {{{{_base_.visualizer}}}}
'''))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        from mmdet.registry import DATASETS
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        item = dataset[0]
        evaluator = METRICS.build(cfg.val_evaluator)
        visualizer = VISUALIZERS.build(dict(cfg.visualizer, name='user_config_det'))
    assert item['data_samples'].gt_instances.bboxes.shape[0] >= 1  # mmdet's box transforms ran
    # mmdet's own RandomFlip (boxes flip with the image), not MMCV's image-only one.
    flips = [t for t in dataset.pipeline.transforms if type(t).__name__ == 'RandomFlip']
    assert flips and type(flips[0]).__module__.startswith('mmdet.')
    assert type(evaluator).__name__ == 'VOCMetric'
    assert type(visualizer).__module__.startswith('mmdet.')


def test_a_segmentation_pipeline_reused_builds(tmp_path):
    root = make_synthetic_voc(str(tmp_path / 'VOCdevkit'), num_train=2, num_val=1, num_aug=1,
                              size=64)
    cfg = load_config(write(tmp_path, f'''
_base_ = ['mmkd::segmentation/voc/cwd_deeplabv3plus_r101-r18-d8_4xb4-40k_voc12aug-512x512.py']
train_dataloader = dict(dataset=dict(_delete_=True, type='mmseg.PascalVOCDataset',
                                     data_root={root!r},
                                     data_prefix=dict(img_path='JPEGImages',
                                                      seg_map_path='SegmentationClass'),
                                     ann_file='ImageSets/Segmentation/train.txt',
                                     pipeline={{{{_base_.train_pipeline}}}}))
'''))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        from mmseg.registry import DATASETS
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        item = dataset[0]
    assert item['data_samples'].gt_sem_seg.data.shape[-2:] == item['inputs'].shape[-2:]
    assert all(type(t).__module__.split('.')[0] in ('mmseg', 'mmcv')
               for t in dataset.pipeline.transforms)


def test_an_ambiguous_bare_name_names_the_candidates():
    with DefaultScope.overwrite_default_scope('mmkd'):
        with pytest.raises(KeyError, match=r"'RandomCrop' is not an mmkd transform.*"
                                           r"\['mmdet', 'mmpretrain', 'mmseg'\].*"
                                           r"type='mmdet.RandomCrop'"):
            Compose([dict(type='RandomCrop', crop_size=8)])
        # A name only one package has resolves by itself.
        assert type(TRANSFORMS.build(dict(type='PackInputs'))).__module__.startswith(
            'mmpretrain.')


def test_every_top_level_piece_of_mmkd_configs_builds_in_mmkd_scope():
    """No mmkd config leaves a top-level pipeline step whose bare name would be ambiguous
    when a user reuses it (the stamped scope is mmkd)."""
    import glob
    seen = 0
    for path in sorted(glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)):
        cfg = Config.fromfile(path)
        for key in ('train_pipeline', 'test_pipeline'):
            for step in cfg.get(key) or []:
                if not isinstance(step, dict) or '.' in str(step.get('type')):
                    continue
                scope = step.get('_scope_') or cfg.get('default_scope', 'mmkd')
                with DefaultScope.overwrite_default_scope(scope):
                    with DefaultScope.overwrite_default_scope('mmkd'):
                        assert TRANSFORMS.get(step['type']) is not None, (path, step)
                seen += 1
    assert seen > 0
