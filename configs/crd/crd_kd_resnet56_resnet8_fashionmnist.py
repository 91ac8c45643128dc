# CRD + KD: ResNet-56 teacher -> ResNet-8 student on Fashion-MNIST.
# CE + 1.0 * KD (tau 4) + 0.8 * CRD (the authors' -a 1 -b 0.8).
_base_ = ['./crd_resnet56_resnet8_fashionmnist.py']

model = dict(
    recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
    losses=dict(loss_kd=dict(type='KDLoss', student='logits', teacher='logits', tau=4,
                             loss_weight=1.0)))
