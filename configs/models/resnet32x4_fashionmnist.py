# CIFAR-style ResNet32x4 (widths 32, 64, 128, 256) for 28x28 one-channel images, 10 classes.
_base_ = ['./resnet20_fashionmnist.py']
model = dict(backbone=dict(depth=32, arch='x4'), head=dict(in_channels=256))
