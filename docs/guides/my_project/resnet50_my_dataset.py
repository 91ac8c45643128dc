# The teacher: mmpretrain's ResNet-50 with its ImageNet weights, fine-tuned on your dataset.
_base_ = ['mmpretrain::_base_/models/resnet50.py', './my_dataset.py', './finetune_schedule.py',
          'mmpretrain::_base_/default_runtime.py']
model = dict(
    backbone=dict(init_cfg=dict(
        type='Pretrained', prefix='backbone',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/'
                   'resnet50_8xb32_in1k_20210831-ea4938fc.pth')),
    head=dict(num_classes={{_base_.num_classes}}, topk=(1, )))
