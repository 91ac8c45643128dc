# Knowledge Review: ResNet32x4 -> ResNet8x4 on Fashion-MNIST, loss weight 5 as the paper's
# CIFAR-100 setting for this pair.
# Train the teacher first: python tools/train.py configs/baselines/resnet32x4_fashionmnist.py
_base_ = ['./reviewkd_resnet56_resnet20_fashionmnist.py']

teacher_checkpoint = 'work_dirs/resnet32x4_fashionmnist/epoch_4.pth'
model = dict(
    student=dict(cfg_path='mmkd::models/resnet8x4_fashionmnist.py'),
    teacher=dict(cfg_path='mmkd::models/resnet32x4_fashionmnist.py',
                 checkpoint=teacher_checkpoint),
    losses=dict(loss_review=dict(loss_weight=5.0)))
