# Wide ResNet WRN-28-4 for CIFAR-100.
model = dict(
    _scope_='mmpretrain',
    type='ImageClassifier',
    backbone=dict(type='mmkd.WideResNet', depth=28, widen_factor=4, in_channels=3),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=100, in_channels=256,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)
