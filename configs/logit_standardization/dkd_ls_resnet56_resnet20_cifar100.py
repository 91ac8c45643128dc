# DKD with logit standardisation, the paper's CIFAR-100 row ResNet-56 -> ResNet-20 (72.32
# top-1 in the paper): z-scored logits, base temperature 3 (tau^2 kept), alpha 1 x 18 and
# beta 2 x 18 (logs/DKD/dkd,resnet56,resnet20,3,18,2.0.txt), CE weight 1, warm-up 20 epochs,
# 240 epochs. Needs data/cifar100 and the teacher (work_dirs/resnet56_cifar100/epoch_240.pth).
_base_ = ['../dkd/dkd_resnet56_resnet20_cifar100.py']

model = dict(losses=dict(loss_dkd=dict(alpha=18.0, beta=36.0, tau=3.0,
                                       logit_standardization=True)))
