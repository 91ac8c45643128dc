# OFD on the four backbone stages: PSPNet ResNet-101 teacher (mmseg model zoo, 78.52 mIoU)
# -> PSPNet ResNet-18 student, VOC 2012 + aug, 40k iterations.
_base_ = ['./ofd_deeplabv3plus_r101-r18-d8_4xb4-40k_voc12aug-512x512.py']

# Dataset, schedule and runtime of the PSPNet student (the same as DeepLabV3+'s here).
teacher_checkpoint = 'checkpoints/pspnet_r101-d8_512x512_40k_voc12aug_20200613_161222-bc933b18.pth'
model = dict(
    student=dict(cfg_path='mmkd::segmentation/voc/pspnet_r18-d8_4xb4-40k_voc12aug-512x512.py'),
    teacher=dict(cfg_path='mmseg::pspnet/pspnet_r101-d8_4xb4-40k_voc12aug-512x512.py',
                 checkpoint=teacher_checkpoint))
