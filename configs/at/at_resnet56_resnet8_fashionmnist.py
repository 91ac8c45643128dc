# Attention transfer (Zagoruyko and Komodakis, ICLR 2017): ResNet-56 teacher -> ResNet-8
# student on Fashion-MNIST (the model-zoo pair and schedule). The spatial attention maps of
# the three residual-group outputs (after their ReLU) are matched; beta = 1000 on the mean
# squared difference of the normalised maps (the authors' code), plus the cross-entropy.
_base_ = ['../_base_/distill/resnet56_resnet8_fashionmnist.py']

model = dict(
    recorders=dict(feats=dict(type='StageFeatures', pre_relu=False)),
    losses=dict(loss_at=dict(type='ATLoss', student='feats', teacher='feats',
                             loss_weight=1000.0)))
