# OFD's CIFAR-100 setting (paper Table 3): WRN-28-4 -> WRN-16-2, 200 epochs, partial L2
# divided by batch size and 1000. Needs data/cifar100 and the trained teacher:
#   python tools/train.py configs/baselines/wrn28_4_cifar100.py
_base_ = ['../_base_/datasets/cifar100.py', '../_base_/schedules/cifar_sgd_200e.py',
          '../_base_/default_runtime.py']

model = dict(
    type='SingleTeacherDistiller',
    student=dict(cfg_path='mmkd::models/wrn16_2_cifar100.py'),
    teacher=dict(cfg_path='mmkd::models/wrn28_4_cifar100.py',
                 checkpoint='work_dirs/wrn28_4_cifar100/epoch_200.pth'),
    recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
    connectors=dict(
        feats_s=dict(type='ConnectorList', connector=dict(type='ConvBNConnector'),
                     input='student.feats', like='teacher.feats'),
        feats_t=dict(type='MarginReLU', input='teacher.feats')),
    losses=dict(loss_ofd=dict(type='OFDLoss', student='feats_s', teacher='feats_t',
                              normalizer=1000)),
    # As the authors' training code: the teacher's BNs normalise with batch statistics.
    teacher_norm='batch_stats',
    dry_run_shape=(3, 32, 32))
