# DKD with logit standardisation (Sun et al., CVPR 2024): ResNet-56 -> ResNet-8 on
# Fashion-MNIST (the model-zoo pair). The authors' CIFAR-100 ResNet-56 -> ResNet-20 setting
# (logs/DKD/dkd,resnet56,resnet20,3,18,2.0.txt: base temperature 3, weight 18 on DKD's
# alpha 1 and beta 2): alpha 18, beta 36, tau 3 (tau^2 kept), CE weight 1; the warm-up of
# DKD scaled to the 4-epoch schedule (4 * 20 / 240 = 1/3 epoch).
# Train the teacher first: python tools/train.py configs/baselines/resnet56_fashionmnist.py
_base_ = ['../dkd/dkd_resnet56_resnet8_fashionmnist.py']

model = dict(losses=dict(loss_dkd=dict(alpha=18.0, beta=36.0, tau=3.0,
                                       logit_standardization=True)))
