# Faster R-CNN, ResNet-18 + FPN, on VOC0712 (mmdet's VOC schedule): the distilled students'
# architecture, and trained alone the baseline they are compared with.
_base_ = ['mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py']

model = dict(
    backbone=dict(depth=18,
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[64, 128, 256, 512]))
