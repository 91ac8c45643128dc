# ReviewKD's CIFAR-100 setting: ResNet-56 -> ResNet-20, loss weight 0.6, warm-up 20 epochs,
# 240 epochs. Needs data/cifar100 and the teacher:
#   python tools/train.py configs/baselines/resnet56_cifar100.py
_base_ = ['../_base_/datasets/cifar100.py', '../_base_/schedules/cifar_sgd_240e.py',
          '../_base_/default_runtime.py']

model = dict(
    type='SingleTeacherDistiller',
    student=dict(cfg_path='mmkd::models/resnet20_cifar100.py'),
    teacher=dict(cfg_path='mmkd::models/resnet56_cifar100.py',
                 checkpoint='work_dirs/resnet56_cifar100/epoch_240.pth'),
    # Levels, shallow to deep: the stage features, then the pooled feature (the neck's output
    # as an N x C x 1 x 1 map), on both nets, as the authors' code.
    recorders=dict(pooled=dict(type='ModuleOutputs', source='neck', item=-1, as_map=True)),
    student_recorders=dict(feats=dict(type='StageFeatures', pre_relu=False)),
    teacher_recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
    connectors=dict(review=dict(type='ReviewKDConnector', input=['student.feats', 'student.pooled'],
                                like=['teacher.feats', 'teacher.pooled'])),
    losses=dict(loss_review=dict(type='HCLLoss', student='review',
                                 teacher=['teacher.feats', 'teacher.pooled'],
                                 loss_weight=0.6)),
    # The authors' CIFAR-100 script never puts the teacher in eval mode: its BNs normalise with
    # the batch's statistics (here without moving its stored ones).
    teacher_norm='batch_stats',
    dry_run_shape=(3, 32, 32))
custom_hooks = [dict(type='TeacherEvaluationHook'),
                dict(type='DistillLossScheduleHook', warmup=20, losses=['loss_review'])]
# The authors' CIFAR-100 script (CIFAR-100/train.py, its defaults; script/reviewKD.sh sets only
# the loss weight): batch 128 on one GPU, SGD lr 0.1 with Nesterov momentum, weight decay 5e-4,
# x0.1 at epochs 150, 180, 210. (mdistiller and the CRD benchmark use batch 64, lr 0.05.)
train_dataloader = dict(batch_size=128)
optim_wrapper = dict(optimizer=dict(lr=0.1, nesterov=True))
auto_scale_lr = dict(base_batch_size=128)
