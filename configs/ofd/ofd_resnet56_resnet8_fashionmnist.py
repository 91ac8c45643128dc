# OFD: ResNet-56 teacher -> ResNet-8 student on Fashion-MNIST (the model-zoo pair).
_base_ = ['./ofd_resnet56_resnet20_fashionmnist.py']

model = dict(student=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py'))
