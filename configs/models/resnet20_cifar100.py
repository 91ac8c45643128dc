# CIFAR-style ResNet-20 for CIFAR-100.
_base_ = ['./resnet56_cifar100.py']
model = dict(backbone=dict(depth=20))
