# Similarity-preserving KD (Tung and Mori, ICCV 2019): ResNet-56 teacher -> ResNet-8
# student on Fashion-MNIST (the model-zoo pair and schedule). The row-normalised batch
# similarity matrices of the last residual group's output are matched; gamma = 3000 (the
# paper's and the CRD benchmark's), plus the cross-entropy.
_base_ = ['../_base_/distill/resnet56_resnet8_fashionmnist.py']

model = dict(
    recorders=dict(last=dict(type='ModuleOutputs', source='backbone.layer3')),
    losses=dict(loss_sp=dict(type='SPLoss', student='last', teacher='last',
                             loss_weight=3000.0)))
