# KD with logit standardisation, the paper's CIFAR-100 row ResNet-56 -> ResNet-20 (71.43
# top-1 in the paper): z-scored logits, base temperature 2 (tau^2 kept), KD weight 9, CE
# weight 0.1, 240 epochs of SGD 0.05 (batch 64, x0.1 at 150/180/210).
# Needs data/cifar100 and the teacher (work_dirs/resnet56_cifar100/epoch_240.pth).
_base_ = ['../_base_/distill/resnet56_resnet20_cifar100.py']

model = dict(
    student=dict(cfg_path='mmkd::models/resnet20_cifar100.py',
                 head=dict(loss=dict(loss_weight=0.1))),
    recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
    losses=dict(loss_kd=dict(type='KDLoss', student='logits', teacher='logits', tau=2.0,
                             loss_weight=9.0, logit_standardization=True)))
train_dataloader = dict(batch_size=64)
