# CIFAR-style ResNet8x4 (widths 32, 64, 128, 256) for 28x28 one-channel images, 10 classes.
_base_ = ['./resnet32x4_fashionmnist.py']
model = dict(backbone=dict(depth=8))
