# Structured KD's pixel-wise + pair-wise terms (the VOC config's distillation part unchanged):
# pixel-wise KD of the logits (tau 1, weight 10, label 255 left out, sum / (H * W)) and the
# pair-wise similarities of the decode head's last feature before the classifier (input of
# `decode_head.conv_seg`; 2 x 2 nodes, weight 0.5, the authors' run script), from the 2x wider
# teacher to the student, same data and schedule as the student alone. Train the teacher first
# (see configs/segmentation/voc/README.md).
_base_ = ['./pkd_deeplabv3plus_r18w16-r18w8-d8_synthetic-voc-64x64.py']

model = dict(
    recorders=dict(feat=dict(type='ModuleInputs', source='decode_head.conv_seg')),
    losses=dict(loss_pa=dict(type='PairWiseSimilarityLoss', student='feat', teacher='feat',
                             scale=0.5, loss_weight=0.5)))
