# KD ResNet-56 -> ResNet-8, with the knowledge-quantification hook (Cheng et al., CVPR 2020).
_base_ = [
    '../kd/kd_resnet56_resnet8_fashionmnist.py',
    '../_base_/knowledge_quantification/fashionmnist_5k_5e.py',  # the setting, shared
]

max_epochs = {{_base_.kq_max_epochs}}
train_dataloader = dict(dataset=dict(indices={{_base_.kq_train_images}}))
param_scheduler = {{_base_.kq_param_scheduler}}
train_cfg = dict(max_epochs={{_base_.kq_max_epochs}})
custom_hooks = {{_base_.kq_custom_hooks}}
