# The measured run: OFD on the four backbone stages (as the VOC OFD config), from the 2x
# wider teacher to the student, same data and schedule as the student alone.
_base_ = ['./cwd_deeplabv3plus_r18w16-r18w8-d8_synthetic-voc-64x64.py']

model = dict(
    recorders=dict(_delete_=True, feats=dict(type='StageFeatures', pre_relu=True)),
    connectors=dict(
        feats_s=dict(type='ConnectorList', connector=dict(type='ConvBNConnector'),
                     input='student.feats', like='teacher.feats'),
        feats_t=dict(type='MarginReLU', input='teacher.feats')),
    losses=dict(_delete_=True, loss_ofd=dict(
        type='OFDLoss', student='feats_s', teacher='feats_t', normalizer=1e5,
        stage_weights=[1 / 8, 1 / 4, 1 / 2, 1])),
    # The teacher's BNs on batch statistics, as the VOC OFD config and OFD's segmentation code.
    teacher_norm='batch_stats')
