# Knowledge Review: ResNet-56 -> ResNet-8 on Fashion-MNIST (the model-zoo pair).
_base_ = ['./reviewkd_resnet56_resnet20_fashionmnist.py']

model = dict(student=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py'))
