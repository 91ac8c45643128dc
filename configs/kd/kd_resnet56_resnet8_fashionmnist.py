# Hinton KD: ResNet-56 teacher -> ResNet-8 student on Fashion-MNIST.
# Train the teacher first: python tools/train.py configs/baselines/resnet56_fashionmnist.py
_base_ = ['./kd_resnet56_resnet20_fashionmnist.py']

model = dict(student=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py'))
