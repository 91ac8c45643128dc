# VID in the CRD benchmark's CIFAR-100 setting (RepDistiller, the resnet56 -> resnet20
# column): CE (weight 1) + 1 * VID on the three residual-group outputs, no KD term
# (-r 1 -a 0 -b 1), 240 epochs, batch 64. The regressors and variances are trained by the
# same SGD (weight decay included), as in RepDistiller.
# Needs data/cifar100 and the teacher: python tools/train.py configs/baselines/resnet56_cifar100.py
_base_ = ['../_base_/distill/resnet56_resnet20_cifar100.py']

model = dict(
    recorders=dict(feats=dict(type='StageFeatures', pre_relu=False)),
    connectors=dict(vid=dict(type='ConnectorList', connector=dict(type='VIDRegressor'),
                             input='student.feats', like='teacher.feats')),
    losses=dict(loss_vid=dict(type='VIDLoss', student='vid', teacher='teacher.feats',
                              loss_weight=1.0)))
train_dataloader = dict(batch_size=64)  # the CRD benchmark's batch
