# The measured run: pixel-wise KD of the logits (tau 1, weight 10, label 255 left out, the
# KL summed over the batch's pixels and divided by H * W as the official structured-KD
# code: the VOC config's distillation part unchanged), from the 2x wider teacher to the
# student, same data and schedule as the student alone. Train the teacher first (see
# configs/segmentation/voc/README.md).
_base_ = ['./cwd_deeplabv3plus_r18w16-r18w8-d8_synthetic-voc-64x64.py']

model = dict(
    losses=dict(_delete_=True, loss_pkd=dict(type='PixelWiseKDLoss', student='logits',
                                             teacher='logits', tau=1.0, normalize='spatial',
                                             loss_weight=10.0)))
