# Structured KD (Liu et al., CVPR 2019), pixel-wise + pair-wise: pixel-wise KD of the
# decode-head logits (as the pixel_kd recipe: tau 1, weight 10, label 255 left out, sum / (H W))
# and the pair-wise cosine similarities between 2 x 2 max-pooled regions of the decode head's
# last feature before the classifier (the input of the logits' conv), weight 0.5, as the
# authors' run script (--pool-scale 0.5 --lambda-pa 0.5).
task = 'segmentation'
description = 'structured KD: pixel-wise KD of the logits + pair-wise region similarities'
distill = dict(
    recorders=dict(logits=dict(type='ModuleOutputs', source='<decode_logits>'),
                   feat=dict(type='ModuleInputs', source='<decode_logits>')),
    losses=dict(loss_pixel_kd=dict(type='PixelWiseKDLoss', student='logits',
                                   teacher='logits', tau=1.0, normalize='spatial',
                                   loss_weight=10.0),
                loss_pa=dict(type='PairWiseSimilarityLoss', student='feat', teacher='feat',
                             scale=0.5, loss_weight=0.5)))
