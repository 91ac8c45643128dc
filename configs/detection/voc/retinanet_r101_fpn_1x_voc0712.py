# RetinaNet, ResNet-101 + FPN, on VOC0712 (mmdet's VOC schedule): a teacher.
_base_ = ['mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py']

model = dict(
    backbone=dict(depth=101,
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
