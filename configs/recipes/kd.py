# Hinton KD (Hinton et al., 2015): KL between the softened logits of teacher and student
# (tau 4, weight 0.9 beside the student's own cross-entropy, as mmkd's KD configs).
# Logits are found in each classifier (mmpretrain, timm, torchvision): no module paths.
task = 'classification'
description = 'logit KD (Hinton et al.): KL of the softened logits, tau 4'
distill = dict(
    recorders=dict(logits=dict(type='ModuleOutputs', source='<logits>')),
    losses=dict(loss_kd=dict(type='KDLoss', student='logits', teacher='logits', tau=4,
                             loss_weight=0.9)))
