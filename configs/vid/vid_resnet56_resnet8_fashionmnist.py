# Variational information distillation (Ahn et al., CVPR 2019): ResNet-56 teacher ->
# ResNet-8 student on Fashion-MNIST (the model-zoo pair and schedule). Per residual group,
# a VIDRegressor (three 1x1 convs, one learned variance per teacher channel, starting at 5)
# predicts a Gaussian over the teacher's group output from the student's; the loss is the
# teacher's negative log-likelihood under it (weight 1), plus the cross-entropy.
_base_ = ['../_base_/distill/resnet56_resnet8_fashionmnist.py']

model = dict(
    recorders=dict(feats=dict(type='StageFeatures', pre_relu=False)),
    connectors=dict(vid=dict(type='ConnectorList', connector=dict(type='VIDRegressor'),
                             input='student.feats', like='teacher.feats')),
    losses=dict(loss_vid=dict(type='VIDLoss', student='vid', teacher='teacher.feats',
                              loss_weight=1.0)))
