# CIFAR-style ResNet-56 for CIFAR-100.
model = dict(
    _scope_='mmpretrain',
    type='ImageClassifier',
    backbone=dict(type='mmkd.CIFARResNet', depth=56, arch='cifar', in_channels=3),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=100, in_channels=64,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)
