# Dense-head logit KD for one-stage detectors: the classification conv of the head, once per
# FPN level (found in the head: the conv with anchors x classes outputs); per-anchor sigmoid
# scores distilled with a binary KL at tau 2 (SigmoidKDLoss: summed over the classes,
# averaged over anchors), one loss per level, as configs/detection/voc/head-kd_*.py. The
# teacher stops after the last level's classification conv (no box branch, no NMS).
task = 'detection'
description = 'dense-head logit KD (sigmoid KL per anchor and class), one-stage detectors'
distill = dict(
    recorders=dict(cls=dict(type='ModuleOutputs', source='<cls_score>')),
    losses=dict(loss_cls_kd=dict(type='SigmoidKDLoss', student='cls', teacher='cls', tau=2.0,
                                 num_classes='<num_classes>', loss_weight=1.0)))
