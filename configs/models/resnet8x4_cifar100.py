# CIFAR-style ResNet8x4 for CIFAR-100.
_base_ = ['./resnet32x4_cifar100.py']
model = dict(backbone=dict(depth=8))
