# Pixel-wise KD (Liu et al., structured KD, CVPR 2019) of a segmentor's decode-head logits:
# per-pixel KL over the classes, tau 1, weight 10, label 255 left out, summed over the
# batch's pixels and divided by H * W as the official code.
task = 'segmentation'
description = 'pixel-wise KD (structured KD) of the decode-head logits'
distill = dict(
    recorders=dict(logits=dict(type='ModuleOutputs', source='<decode_logits>')),
    losses=dict(loss_pixel_kd=dict(type='PixelWiseKDLoss', student='logits',
                                   teacher='logits', tau=1.0, normalize='spatial',
                                   loss_weight=10.0)))
