# Pixel-wise KD of the logits, ignoring label 255: PSPNet ResNet-101 -> PSPNet ResNet-18,
# VOC 2012 + aug, 40k iterations.
_base_ = ['./pkd_deeplabv3plus_r101-r18-d8_4xb4-40k_voc12aug-512x512.py']

teacher_checkpoint = 'checkpoints/pspnet_r101-d8_512x512_40k_voc12aug_20200613_161222-bc933b18.pth'
model = dict(
    student=dict(cfg_path='mmkd::segmentation/voc/pspnet_r18-d8_4xb4-40k_voc12aug-512x512.py'),
    teacher=dict(cfg_path='mmseg::pspnet/pspnet_r101-d8_4xb4-40k_voc12aug-512x512.py',
                 checkpoint=teacher_checkpoint))
