# Decoupled KD (Zhao et al., CVPR 2022): target-class (alpha) and non-target-class (beta) KL
# of the logits, tau 4; the authors' defaults (mdistiller: alpha 1, beta 8, CE weight 1) and
# their linear warm-up over the first 20 of 240 epochs, as a fraction of the run's schedule.
# Teachers weaker than the paper's ImageNet / ResNet-32x4 ones take a smaller beta (2 for
# ResNet-56): --cfg-options model.losses.loss_dkd.beta=2.
task = 'classification'
description = 'decoupled KD (Zhao et al.): target / non-target KL, alpha 1, beta 8, warm-up'
distill = dict(
    recorders=dict(logits=dict(type='ModuleOutputs', source='<logits>')),
    losses=dict(loss_dkd=dict(type='DKDLoss', student='logits', teacher='logits', alpha=1.0,
                              beta=8.0, tau=4.0)),
    hooks=[dict(type='DistillLossScheduleHook', warmup_ratio=20 / 240, losses=['loss_dkd'])])
