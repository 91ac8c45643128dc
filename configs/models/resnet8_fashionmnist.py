# CIFAR-style ResNet-8 classifier for 28x28 one-channel images, 10 classes.
_base_ = ['./resnet20_fashionmnist.py']
model = dict(backbone=dict(depth=8))
