# DIST, the authors' CIFAR-100 row ResNet-56 -> ResNet-20 (71.75 +- 0.30 in the official
# repository's README): beta = gamma = 1, tau 4, loss weight 2, CE weight 1, 240 epochs of
# SGD 0.05 (batch 64, weight decay 5e-4, x0.1 at 150/180/210: their 120-epoch constant
# "warm-up" at 0.05 followed by a step decay every 30 epochs is this schedule).
# Needs data/cifar100 and the teacher (work_dirs/resnet56_cifar100/epoch_240.pth).
_base_ = ['../_base_/distill/resnet56_resnet20_cifar100.py']

model = dict(
    recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
    losses=dict(loss_dist=dict(type='DISTLoss', student='logits', teacher='logits', beta=1.0,
                               gamma=1.0, tau=4.0, loss_weight=2.0)))
train_dataloader = dict(batch_size=64)
