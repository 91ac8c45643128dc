# The student alone, for the measured run: the VOC DeepLabV3+ ResNet-18 config scaled down
# to the synthetic VOC-format set of tools/dataset_converters/make_synthetic_voc.py
# (data/synthetic_voc: 64-80 px images, 5 object classes, 255 on object borders).
# ResNet-18 v1c at 1/8 width (stages 8..64 channels), BN, no ImageNet weights,
# 1200 iterations of 8 images (24 epochs of the 400 training images): minutes on a 2-core CPU.
_base_ = ['../voc/deeplabv3plus_r18-d8_4xb4-40k_voc12aug-512x512.py']

width = 8
norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (64, 64)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(stem_channels=width, base_channels=width, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=8 * width, channels=2 * width, c1_in_channels=width,
                     c1_channels=4, dilations=(1, 2, 3, 4), norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=4 * width, channels=width, norm_cfg=norm_cfg))

# VOC 2012's pipelines with 512 px scaled to 64 px. mmseg's own transforms carry its prefix;
# MMCV's (LoadImageFromFile, RandomResize, Pad) are bare: MMEngine finds a prefixed name only in
# that package's own registry, never in MMCV's under it.
data_root = 'data/synthetic_voc/VOC2012'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmseg.LoadAnnotations'),
    dict(type='RandomResize', scale=(256, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='mmseg.RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='mmseg.RandomFlip', prob=0.5),
    dict(type='mmseg.PhotoMetricDistortion'),
    dict(type='Pad', size=crop_size),
    dict(type='mmseg.PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmseg.Resize', scale=(256, 64), keep_ratio=True),
    dict(type='mmseg.LoadAnnotations'),
    dict(type='mmseg.PackSegInputs'),
]
train_dataloader = dict(
    _delete_=True, batch_size=8, num_workers=2, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    # Redefined whole (_delete_), so it names its package: the distillation configs built
    # on this one run with default_scope='mmkd'.
    dataset=dict(_scope_='mmseg', type='PascalVOCDataset', data_root=data_root,
                 data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
                 ann_file='ImageSets/Segmentation/train.txt', pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=2,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

iters = 1200
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=iters,
                        by_epoch=False)]
train_cfg = dict(max_iters=iters, val_interval=iters)
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=iters))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
