# The student alone: PSPNet with a ResNet-18 (v1c) backbone, output stride 8, on
# VOC 2012 + SBD aug, 40k iterations of 4 GPUs x 4 images. mmseg ships this model for
# Cityscapes only; the head widths are those of its pspnet_r18-d8 configs.
_base_ = 'mmseg::pspnet/pspnet_r50-d8_4xb4-40k_voc12aug-512x512.py'

model = dict(
    pretrained='open-mmlab://resnet18_v1c',
    backbone=dict(depth=18),
    decode_head=dict(in_channels=512, channels=128),
    auxiliary_head=dict(in_channels=256, channels=64))
