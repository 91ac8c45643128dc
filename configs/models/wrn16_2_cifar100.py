# Wide ResNet WRN-16-2 for CIFAR-100.
_base_ = ['./wrn28_4_cifar100.py']
model = dict(backbone=dict(depth=16, widen_factor=2), head=dict(in_channels=128))
