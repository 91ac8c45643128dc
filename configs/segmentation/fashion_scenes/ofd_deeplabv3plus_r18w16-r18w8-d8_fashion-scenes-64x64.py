# OFD on the Fashion-MNIST scenes, as the synthetic-VOC and VOC OFD configs: every backbone
# stage's pre-ReLU feature, the teacher's through a margin ReLU, the student's through a 1x1
# conv + BN, partial L2 / (batch * 1e5) with stage weights 1/8 .. 1 (OFD's segmentation code),
# the teacher's BNs on batch statistics. (The `ofd` recipe is the classification setting.)
_base_ = ['./cwd_deeplabv3plus_r18w16-r18w8-d8_fashion-scenes-64x64.py']

model = dict(
    recipe=None,
    recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
    connectors=dict(
        feats_s=dict(type='ConnectorList', connector=dict(type='ConvBNConnector'),
                     input='student.feats', like='teacher.feats'),
        feats_t=dict(type='MarginReLU', input='teacher.feats')),
    losses=dict(loss_ofd=dict(
        type='OFDLoss', student='feats_s', teacher='feats_t', normalizer=1e5,
        stage_weights=[1 / 8, 1 / 4, 1 / 2, 1])),
    teacher_norm='batch_stats')
