# Overhaul of feature distillation (Heo et al., ICCV 2019): every backbone stage's pre-ReLU
# feature (found by StageFeatures); the teacher's through a margin ReLU (margins from its
# BNs), the student's through a 1x1 conv + BN per stage (channels inferred); partial L2,
# stage weights 2^-(n-i), / (batch * 1000). The teacher's BNs on batch statistics during
# training, as the authors' code runs it.
task = 'classification'
description = 'OFD (Heo et al.): pre-ReLU stage features, margin ReLU, partial L2'
distill = dict(
    recorders=dict(feats=dict(type='StageFeatures', pre_relu=True, backbone='<backbone>')),
    connectors=dict(
        feats_s=dict(type='ConnectorList', connector=dict(type='ConvBNConnector'),
                     input='student.feats', like='teacher.feats'),
        feats_t=dict(type='MarginReLU', input='teacher.feats')),
    losses=dict(loss_ofd=dict(type='OFDLoss', student='feats_s', teacher='feats_t',
                              normalizer=1000)),
    teacher_norm='batch_stats')
