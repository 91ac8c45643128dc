# ReviewKD's CIFAR-100 setting: ResNet32x4 -> ResNet8x4, loss weight 5.0, warm-up 20 epochs,
# 240 epochs. Needs data/cifar100 and the teacher:
#   python tools/train.py configs/baselines/resnet32x4_cifar100.py
_base_ = ['../_base_/datasets/cifar100.py', '../_base_/schedules/cifar_sgd_240e.py',
          '../_base_/default_runtime.py']

model = dict(
    type='SingleTeacherDistiller',
    student=dict(cfg_path='mmkd::models/resnet8x4_cifar100.py'),
    teacher=dict(cfg_path='mmkd::models/resnet32x4_cifar100.py',
                 checkpoint='work_dirs/resnet32x4_cifar100/epoch_240.pth'),
    student_recorders=dict(feats=dict(type='StageFeatures', pre_relu=False)),
    teacher_recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
    connectors=dict(review=dict(type='ReviewKDConnector', input='student.feats',
                                like='teacher.feats')),
    losses=dict(loss_review=dict(type='HCLLoss', student='review', teacher='teacher.feats',
                                 loss_weight=5.0)),
    dry_run_shape=(3, 32, 32))
custom_hooks = [dict(type='TeacherEvaluationHook'),
                dict(type='DistillLossScheduleHook', warmup=20, losses=['loss_review'])]
train_dataloader = dict(batch_size=64)  # the CRD benchmark's batch
