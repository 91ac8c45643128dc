# Attention transfer in the CRD benchmark's CIFAR-100 setting (RepDistiller, the
# resnet56 -> resnet20 column): CE (weight 1) + 1000 * AT on the three residual-group
# outputs, no KD term (-r 1 -a 0 -b 1000), 240 epochs, batch 64.
# Needs data/cifar100 and the teacher: python tools/train.py configs/baselines/resnet56_cifar100.py
_base_ = ['../_base_/distill/resnet56_resnet20_cifar100.py']

model = dict(
    recorders=dict(feats=dict(type='StageFeatures', pre_relu=False)),
    losses=dict(loss_at=dict(type='ATLoss', student='feats', teacher='feats',
                             loss_weight=1000.0)))
train_dataloader = dict(batch_size=64)  # the CRD benchmark's batch
