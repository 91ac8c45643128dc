# OFD (Heo et al., ICCV 2019) on the backbone, RetinaNet: ResNet-101 teacher -> ResNet-18
# student on VOC0712. Pre-ReLU outputs of stages 2-4 (those the FPN reads; stage 1 of the
# student is frozen by mmdet's config) found by StageFeatures; the teacher's through a
# margin ReLU, the student's through a 1x1 conv + BN per stage; partial L2.
# Train the teacher first:
#   python tools/train.py configs/detection/voc/retinanet_r101_fpn_1x_voc0712.py
_base_ = ['./retinanet_r18_fpn_1x_voc0712.py']

teacher_checkpoint = 'work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    _delete_=True,
    _scope_='mmkd',
    type='DetectionDistiller',
    student=dict(cfg_path='mmkd::detection/voc/retinanet_r18_fpn_1x_voc0712.py'),
    teacher=dict(cfg_path='mmkd::detection/voc/retinanet_r101_fpn_1x_voc0712.py',
                 checkpoint=teacher_checkpoint),
    recorders=dict(feats=dict(type='StageFeatures', stages=['layer2', 'layer3', 'layer4'],
                              pre_relu=True)),
    connectors=dict(
        feats_s=dict(type='ConnectorList', connector=dict(type='ConvBNConnector'),
                     input='student.feats', like='teacher.feats'),
        feats_t=dict(type='MarginReLU', input='teacher.feats')),
    losses=dict(loss_ofd=dict(type='OFDLoss', student='feats_s', teacher='feats_t',
                              normalizer=10000, loss_weight=1.0)))
custom_hooks = [dict(type='mmkd.TeacherEvaluationHook')]
