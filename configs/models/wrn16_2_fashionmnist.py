# Wide ResNet WRN-16-2 for 28x28 one-channel images, 10 classes.
_base_ = ['./wrn40_2_fashionmnist.py']
model = dict(backbone=dict(depth=16))
