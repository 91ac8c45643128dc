# The student: mmpretrain's ResNet-18 with its ImageNet weights; trained alone, this is the
# baseline that distillation has to beat.
_base_ = ['mmpretrain::_base_/models/resnet18.py', './my_dataset.py', './finetune_schedule.py',
          'mmpretrain::_base_/default_runtime.py']
model = dict(
    backbone=dict(init_cfg=dict(
        type='Pretrained', prefix='backbone',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/'
                   'resnet18_8xb32_in1k_20210831-fbbb1da6.pth')),
    head=dict(num_classes={{_base_.num_classes}}, topk=(1, )))
