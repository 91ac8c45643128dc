# Hinton KD: ResNet-20 teacher -> ResNet-8 student on Fashion-MNIST (what `make demo` runs).
# Train the teacher first: python tools/train.py configs/baselines/resnet20_fashionmnist.py
_base_ = ['./kd_resnet56_resnet20_fashionmnist.py']

model = dict(student=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py'),
             teacher=dict(cfg_path='mmkd::models/resnet20_fashionmnist.py',
                          checkpoint='work_dirs/resnet20_fashionmnist/epoch_4.pth'))
