# Knowledge Review (Chen et al., CVPR 2021): the student's levels (stage outputs, then its
# pooled feature as a 1x1 map) fused deepest-first by ABF (ReviewKDConnector), each compared
# with the teacher's level (pre-ReLU stage features, then its pooled feature) by the
# hierarchical context loss; weight 0.6 and a warm-up over the first 20 of 240 epochs (as a
# fraction of the run's schedule), the teacher's BNs on batch statistics, as the authors'
# CIFAR-100 code.
task = 'classification'
description = 'ReviewKD (Chen et al.): ABF fusion of the stages, hierarchical context loss'
distill = dict(
    recorders=dict(pooled=dict(type='ModuleOutputs', source='<pooled>', as_map=True)),
    student_recorders=dict(feats=dict(type='StageFeatures', pre_relu=False,
                                      backbone='<backbone>')),
    teacher_recorders=dict(feats=dict(type='StageFeatures', pre_relu=True,
                                      backbone='<backbone>')),
    connectors=dict(review=dict(type='ReviewKDConnector', input=['student.feats', 'student.pooled'],
                                like=['teacher.feats', 'teacher.pooled'])),
    losses=dict(loss_review=dict(type='HCLLoss', student='review',
                                 teacher=['teacher.feats', 'teacher.pooled'], loss_weight=0.6)),
    teacher_norm='batch_stats',
    hooks=[dict(type='DistillLossScheduleHook', warmup_ratio=20 / 240, losses=['loss_review'])])
