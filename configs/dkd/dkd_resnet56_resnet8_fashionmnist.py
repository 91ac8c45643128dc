# Decoupled KD (Zhao et al., CVPR 2022): ResNet-56 -> ResNet-8 on Fashion-MNIST (the
# model-zoo pair). TCKD (alpha 1) + NCKD (beta 2, the authors' value for the ResNet-56
# teacher, ResNet-56 -> ResNet-20), tau 4, CE weight 1. The paper warms the loss up over
# 20 of 240 epochs; on the 4-epoch schedule that is 4 * 20 / 240 = 1/3 epoch.
_base_ = ['../_base_/distill/resnet56_resnet8_fashionmnist.py']

model = dict(
    recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
    losses=dict(loss_dkd=dict(type='DKDLoss', student='logits', teacher='logits', alpha=1.0,
                              beta=2.0, tau=4.0)))
custom_hooks = [dict(type='TeacherEvaluationHook'),
                dict(type='DistillLossScheduleHook', warmup=4 * 20 / 240, losses=['loss_dkd'])]
