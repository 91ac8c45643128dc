# Pixel-wise KD (Liu et al., CVPR 2019) of the decode head's logits, ignoring label 255:
# DeepLabV3+ ResNet-101 teacher -> DeepLabV3+ ResNet-18 student, VOC 2012 + aug, 40k iters.
_base_ = ['./cwd_deeplabv3plus_r101-r18-d8_4xb4-40k_voc12aug-512x512.py']

model = dict(
    # The weight of pixel-wise distillation in the paper (lambda_1 = 10), on the official
    # code's normalisation: the KL summed over the batch's pixels (label 255 left out) and
    # divided by the logits' H * W, i.e. 4x the per-pixel mean at 4 images per GPU.
    losses=dict(_delete_=True, loss_pkd=dict(type='PixelWiseKDLoss', student='logits',
                                             teacher='logits', tau=1.0, normalize='spatial',
                                             loss_weight=10.0)))
