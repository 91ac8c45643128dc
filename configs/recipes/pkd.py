# PKD (Cao et al., NeurIPS 2022): FPN features standardised per channel, then MSE / 2 (one
# minus their Pearson correlation), one loss per level; weight 6 (the authors' Faster R-CNN
# setting; 10 for RetinaNet students: --cfg-options model.losses.loss_pkd.loss_weight=10).
# The authors' MMRazor configs distil the first four levels; this recipe distils every level.
task = 'detection'
description = 'PKD (Cao et al.): Pearson-correlation imitation of every FPN level'
distill = dict(
    recorders=dict(fpn=dict(type='ModuleOutputs', source='<fpn>')),
    losses=dict(loss_pkd=dict(type='PKDLoss', student='fpn', teacher='fpn', loss_weight=6.0)))
