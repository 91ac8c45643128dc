# KD with logit standardisation (Sun et al., CVPR 2024): ResNet-56 -> ResNet-8 on
# Fashion-MNIST (the model-zoo pair). Both nets' logits are z-scored per sample before the
# softmax; the authors' CIFAR-100 ResNet-56 -> ResNet-20 setting: base temperature 2 (tau^2
# kept), KD weight 9, CE weight 0.1 (logs/KD/kd,resnet56,resnet20,2,9.txt and their
# tools/train.py --logit-stand --base-temp 2 --kd-weight 9; CE_WEIGHT 0.1 in their cfg.py).
_base_ = ['../_base_/distill/resnet56_resnet8_fashionmnist.py']

model = dict(
    student=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py',
                 head=dict(loss=dict(loss_weight=0.1))),
    recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
    losses=dict(loss_kd=dict(type='KDLoss', student='logits', teacher='logits', tau=2.0,
                             loss_weight=9.0, logit_standardization=True)))
