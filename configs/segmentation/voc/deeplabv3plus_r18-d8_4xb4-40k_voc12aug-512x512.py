# The student alone: DeepLabV3+ with a ResNet-18 (v1c) backbone, output stride 8, on
# VOC 2012 + SBD aug (10,582 training images), 40k iterations of 4 GPUs x 4 images.
# mmseg ships this model for Cityscapes only; the head widths are those of its
# deeplabv3plus_r18-d8 configs. Also the student of the distillation configs here.
_base_ = 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-40k_voc12aug-512x512.py'

model = dict(
    pretrained='open-mmlab://resnet18_v1c',
    backbone=dict(depth=18),
    decode_head=dict(in_channels=512, channels=128, c1_in_channels=64, c1_channels=12),
    auxiliary_head=dict(in_channels=256, channels=64))
