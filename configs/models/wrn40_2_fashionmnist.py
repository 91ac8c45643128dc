# Wide ResNet WRN-40-2 (pre-activation) for 28x28 one-channel images, 10 classes.
model = dict(
    _scope_='mmpretrain',
    type='ImageClassifier',
    backbone=dict(type='mmkd.WideResNet', depth=40, widen_factor=2, in_channels=1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=128,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)
