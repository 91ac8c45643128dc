# OFD: WRN-40-2 teacher -> WRN-16-2 student on Fashion-MNIST. Both are pre-activation nets:
# StageFeatures takes the input of the ReLU after each stage (next block's BN-ReLU, or the
# final BN-ReLU), and the margins come from those BNs.
# Train the teacher first: python tools/train.py configs/baselines/wrn40_2_fashionmnist.py
_base_ = ['./ofd_resnet56_resnet20_fashionmnist.py']

teacher_checkpoint = 'work_dirs/wrn40_2_fashionmnist/epoch_4.pth'
model = dict(
    student=dict(cfg_path='mmkd::models/wrn16_2_fashionmnist.py'),
    teacher=dict(cfg_path='mmkd::models/wrn40_2_fashionmnist.py',
                 checkpoint=teacher_checkpoint))
