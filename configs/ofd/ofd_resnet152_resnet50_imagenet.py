# OFD's ImageNet setting (paper Table 4): ResNet-152 -> ResNet-50 with mmpretrain's models,
# partial L2 over the four stages divided by batch size and 10000. Needs data/imagenet and
# the teacher's weights (mmpretrain's resnet152_8xb32_in1k checkpoint, downloaded by you
# beforehand: mmkd never downloads). 8 processes: bash tools/dist_train.sh <this> 8
_base_ = ['../_base_/datasets/imagenet.py', '../_base_/schedules/imagenet_sgd_100e.py',
          '../_base_/default_runtime.py']

model = dict(
    type='SingleTeacherDistiller',
    student=dict(cfg_path='mmpretrain::resnet/resnet50_8xb32_in1k.py'),
    teacher=dict(cfg_path='mmpretrain::resnet/resnet152_8xb32_in1k.py',
                 checkpoint='checkpoints/resnet152_8xb32_in1k_20210901-4d7582fa.pth'),
    recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
    connectors=dict(
        feats_s=dict(type='ConnectorList', connector=dict(type='ConvBNConnector'),
                     input='student.feats', like='teacher.feats'),
        feats_t=dict(type='MarginReLU', input='teacher.feats')),
    losses=dict(loss_ofd=dict(type='OFDLoss', student='feats_s', teacher='feats_t',
                              normalizer=10000)),
    # As the authors' training code: the teacher's BNs normalise with batch statistics.
    teacher_norm='batch_stats',
    dry_run_shape=(3, 224, 224))
