# DIST (Huang et al., NeurIPS 2022): ResNet-56 -> ResNet-8 on Fashion-MNIST (the model-zoo
# pair). Inter- and intra-class Pearson relations of the tempered softmax, beta = gamma = 1,
# tau 4, loss weight 2, CE weight 1: the authors' CIFAR-100 setting (dist_cifar.yaml,
# kd: dist_t4, kd_loss_weight 2). No warm-up.
_base_ = ['../_base_/distill/resnet56_resnet8_fashionmnist.py']

model = dict(
    recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
    losses=dict(loss_dist=dict(type='DISTLoss', student='logits', teacher='logits', beta=1.0,
                               gamma=1.0, tau=4.0, loss_weight=2.0)))
