"""``tools/distill.py``: a user's own mmpretrain, mmdet (RetinaNet) and mmseg (DeepLabV3+)
configs, each distilled by one command on data the tests write; the dumped config trains
the same run again with ``tools/train.py``; a config run by mmpretrain's own training
entry point with ``custom_imports=dict(imports=['mmkd'])``."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import uuid

import pytest
import torch
from mmengine.config import Config

from mmkd.distillers.builder import build_model_from_cfg, model_cfg_from

from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools'))
import distill  # noqa: E402

CLASSIFIER = '''
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, in_channels=1, stem_channels={w},
                  base_channels={w}),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels={w8},
              loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(num_classes=10, mean=[72.94], std=[90.02])
pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='FashionMNIST', data_root={root!r}, split='train', download=False,
                 pipeline=pipeline, indices=64))
val_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='FashionMNIST', data_root={root!r}, split='test', download=False,
                 pipeline=pipeline, indices=64))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9))
train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=2)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=2),
                     logger=dict(type='LoggerHook', interval=1))
log_processor = dict(window_size=1)
visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
randomness = dict(seed=0, deterministic=True)
'''

RETINANET = '''
_base_ = 'mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py'
data_root = {root!r}
model = dict(
    backbone=dict(depth=18, base_channels={w}, init_cfg=None, frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[{w}, {w2}, {w4}, {w8}], out_channels=32),
    bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1),
    test_cfg=dict(nms_pre=200, max_per_img=50))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                          'scale_factor'))]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='VOCDataset', data_root=data_root,
                 ann_file='VOC2007/ImageSets/Main/trainval.txt',
                 data_prefix=dict(sub_data_root='VOC2007/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=16), pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
default_hooks = dict(logger=dict(interval=1))
log_processor = dict(window_size=1)
randomness = dict(seed=0)
'''

DEEPLABV3PLUS = '''
_base_ = 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512.py'
data_root = {root!r}
crop_size = (64, 64)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(depth=18, stem_channels={w}, base_channels={w}, norm_cfg=norm_cfg),
    decode_head=dict(in_channels={w8}, channels={w2}, c1_in_channels={w}, c1_channels=4,
                     dilations=(1, 2, 3, 4), norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels={w4}, channels={w}, norm_cfg=norm_cfg))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(256, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 64), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='PascalVOCDataset', data_root=data_root,
                 data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
                 ann_file='ImageSets/Segmentation/train.txt', pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=2, by_epoch=False)]
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
log_processor = dict(window_size=1)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
'''


pytestmark = pytest.mark.usefixtures('one_thread')


def write_user_configs(folder, template: str, root: str) -> dict:
    """The user's student config (width 8), teacher config (width 16) and an
    initialised teacher checkpoint, as a user's repository would hold them."""
    paths = {}
    for role, w in (('student', 8), ('teacher', 16)):
        paths[role] = str(folder / f'my_{role}.py')
        with open(paths[role], 'w') as f:
            f.write(template.format(root=root, w=w, w2=2 * w, w4=4 * w, w8=8 * w))
    cfg, scope = model_cfg_from(dict(cfg_path=paths['teacher']), 'teacher')
    net = build_model_from_cfg(cfg, scope)
    net.init_weights()
    paths['checkpoint'] = str(folder / 'teacher.pth')
    torch.save(dict(state_dict=net.state_dict()), paths['checkpoint'])
    return paths


def train_losses(work_dir: str) -> list:
    """The training lines of a run's scalars (every key with 'loss')."""
    found = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            found += [{k: v for k, v in json.loads(line).items() if 'loss' in k}
                      for line in f if '"loss"' in line]
    return found


def run_tool(args: list, cwd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    done = subprocess.run([sys.executable] + args, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def distil_and_reproduce(tmp_path, template: str, root: str, recipe, capsys,
                         extra=()) -> tuple:
    """One tools/distill.py command (in this process), then tools/train.py on the dumped
    config (a fresh process); returns the composed config, both runs' losses and output."""
    paths = write_user_configs(tmp_path, template, root)
    work_dir = str(tmp_path / 'distilled')
    argv = [paths['student'], '--teacher', paths['teacher'], '--teacher-checkpoint',
            paths['checkpoint'], '--work-dir', work_dir, '--cfg-options',
            f'experiment_name=test_{uuid.uuid4().hex[:12]}',
            f'visualizer.name=test_{uuid.uuid4().hex[:12]}']
    dumped = distill.main(argv + (['--recipe', recipe] if recipe else []) + list(extra))
    out = capsys.readouterr().out
    assert osp.dirname(dumped) == work_dir
    again = str(tmp_path / 'again')
    run_tool([osp.join(REPO, 'tools', 'train.py'), dumped, '--work-dir', again], str(tmp_path))
    first, second = train_losses(work_dir), train_losses(again)
    assert first and first == second  # the dumped config is the whole run
    return Config.fromfile(dumped), first, out


def test_a_users_mmpretrain_config_is_distilled_in_one_command(tmp_path, fashion_mnist_root,
                                                               capsys):
    cfg, losses, out = distil_and_reproduce(tmp_path, CLASSIFIER, fashion_mnist_root, None,
                                            capsys)
    assert "no --recipe: the default for a classification model, 'kd'" in out
    # The user's data, schedule and scope are kept; the model became the distiller.
    assert cfg.default_scope == 'mmpretrain' and cfg.train_cfg.max_epochs == 2
    assert cfg.model.type == 'mmkd.Distiller' and cfg.model.student.type == 'ImageClassifier'
    assert cfg.model.teacher.backbone.base_channels == 16
    assert 'preprocess' not in cfg.model.teacher  # the same normalisation as the student
    assert {'loss', 'loss_task', 'loss_kd'} <= set(losses[0]) and len(losses) == 4
    assert any(h['type'] == 'mmkd.TeacherEvaluationHook' for h in cfg.custom_hooks)


def test_a_users_retinanet_config_is_distilled_in_one_command(tmp_path, capsys):
    from make_synthetic_voc_det import make_synthetic_voc_det
    root = make_synthetic_voc_det(str(tmp_path / 'voc'), num_trainval=8, num_test=4, size=96)
    cfg, losses, out = distil_and_reproduce(tmp_path, RETINANET, root, 'pkd', capsys,
                                            ['--no-teacher-eval'])
    assert cfg.default_scope == 'mmdet' and cfg.model.type == 'mmkd.DetectionDistiller'
    assert cfg.model.student.type == 'RetinaNet'
    # One loss per FPN level, named by stride.
    assert {f'loss_pkd_p{i}' for i in range(3, 8)} <= set(losses[0])
    assert {'loss_cls', 'loss_bbox'} <= set(losses[0]) and len(losses) == 2


def test_a_users_deeplabv3plus_config_is_distilled_in_one_command(tmp_path, capsys):
    from make_synthetic_voc import make_synthetic_voc
    root = make_synthetic_voc(str(tmp_path / 'VOCdevkit'), num_train=4, num_val=2, num_aug=1,
                              size=64)
    cfg, losses, out = distil_and_reproduce(tmp_path, DEEPLABV3PLUS, root, None, capsys,
                                            ['--no-teacher-eval'])
    assert "the default for a segmentation model, 'cwd'" in out
    assert cfg.default_scope == 'mmseg' and cfg.model.student.type == 'EncoderDecoder'
    assert {'loss_cwd', 'decode.loss_ce', 'aux.loss_ce'} <= set(losses[0]) and len(losses) == 2


def test_custom_imports_in_a_config_run_by_mmpretrains_own_train_py(tmp_path,
                                                                    fashion_mnist_root):
    """A user's repository without mmkd's tools: mmpretrain's tools/train.py, mmkd imported
    by custom_imports, a distiller that names its recipe (whose hooks must be in the
    config: only mmkd's tools add them)."""
    import mmpretrain
    train_py = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools', 'train.py')
    assert osp.isfile(train_py)
    paths = write_user_configs(tmp_path, CLASSIFIER, fashion_mnist_root)
    config = str(tmp_path / 'my_kd.py')
    with open(config, 'w') as f:
        f.write(f'''_base_ = ['./my_student.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
model = dict(_delete_=True, type='mmkd.Distiller', recipe='dkd',
             student=dict(cfg_path={paths['student']!r}),
             teacher=dict(cfg_path={paths['teacher']!r}, checkpoint={paths['checkpoint']!r}))
custom_hooks = [dict(type='mmkd.DistillLossScheduleHook', warmup=1, losses=['loss_dkd'])]
train_cfg = dict(max_epochs=1)
''')
    work_dir = str(tmp_path / 'work')
    run_tool([train_py, config, '--work-dir', work_dir], str(tmp_path))
    losses = train_losses(work_dir)
    assert len(losses) == 2 and all({'loss_task', 'loss_dkd'} <= set(line) for line in losses)
    # The warm-up hook ran: half the epoch done after the first of two iterations.
    with open(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))[0]) as f:
        scales = [json.loads(line).get('distill_scale') for line in f]
    assert [s for s in scales if s is not None] == [0.5, 1.0]
