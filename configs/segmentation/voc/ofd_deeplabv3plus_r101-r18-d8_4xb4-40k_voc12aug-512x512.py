# OFD (Heo et al., ICCV 2019) on the four backbone stages: DeepLabV3+ ResNet-101 teacher
# (mmseg model zoo, 78.62 mIoU) -> DeepLabV3+ ResNet-18 student, VOC 2012 + aug, 40k iters.
# Data and teacher weights: see README.md next to this file.
_base_ = ['./deeplabv3plus_r18-d8_4xb4-40k_voc12aug-512x512.py']
default_scope = 'mmkd'

teacher_checkpoint = ('checkpoints/deeplabv3plus_r101-d8_512x512_40k_voc12aug_'
                      '20200613_205333-faf03387.pth')
model = dict(
    _delete_=True,
    type='SingleTeacherDistiller',
    student=dict(
        cfg_path='mmkd::segmentation/voc/deeplabv3plus_r18-d8_4xb4-40k_voc12aug-512x512.py'),
    teacher=dict(
        cfg_path='mmseg::deeplabv3plus/deeplabv3plus_r101-d8_4xb4-40k_voc12aug-512x512.py',
        checkpoint=teacher_checkpoint),
    # Pre-ReLU output of each ResNet stage; the teacher stops after its last stage.
    recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
    connectors=dict(
        feats_s=dict(type='ConnectorList', connector=dict(type='ConvBNConnector'),
                     input='student.feats', like='teacher.feats'),
        feats_t=dict(type='MarginReLU', input='teacher.feats')),
    # As OFD's segmentation code: stage dividers 8, 4, 2, 1 and 1e-5 / batch overall.
    losses=dict(loss_ofd=dict(type='OFDLoss', student='feats_s', teacher='feats_t',
                              normalizer=1e5, stage_weights=[1 / 8, 1 / 4, 1 / 2, 1])),
    # As OFD's segmentation code (t_net.train()): the teacher's BNs normalise with the batch's
    # statistics (synchronised across GPUs by its SyncBN), its stored statistics untouched.
    teacher_norm='batch_stats')

# The teacher's mIoU on the val set, once before training and before testing.
custom_hooks = [dict(type='TeacherEvaluationHook')]
