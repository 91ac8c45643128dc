# Fashion-MNIST (28x28 grey images, 10 classes) from data/fashion_mnist;
# `make data` (tools/dataset_converters/prepare_fashion_mnist.py) puts it there.
dataset_type = 'FashionMNIST'
data_root = 'data/fashion_mnist'

data_preprocessor = dict(
    type='mmpretrain.ClsDataPreprocessor',
    num_classes=10,
    mean=[72.94],  # 0.2860 * 255
    std=[90.02],  # 0.3530 * 255
    to_rgb=False,
)

# Pipeline steps name their package: a user config that reuses `_base_.train_pipeline` of an
# `mmkd::` config builds them in mmkd's scope (MMEngine stamps it), where bare names of several
# task packages would be ambiguous.
train_pipeline = [
    dict(type='mmpretrain.RandomCrop', crop_size=28, padding=2),
    dict(type='mmpretrain.RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='mmpretrain.PackInputs'),
]
test_pipeline = [dict(type='mmpretrain.PackInputs')]

train_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(_scope_='mmpretrain', type=dataset_type, data_root=data_root,
                 split='train', download=False, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=256,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_scope_='mmpretrain', type=dataset_type, data_root=data_root,
                 split='test', test_mode=True, download=False, pipeline=test_pipeline),
)
val_evaluator = dict(type='mmpretrain.Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
