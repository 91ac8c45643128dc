# Knowledge Review (Chen et al., CVPR 2021): ResNet-56 -> ResNet-20 on Fashion-MNIST.
# The student's levels (stage outputs, then its pooled feature as a 1x1 map) run deepest-first
# through ABF fusions (ReviewKDConnector); each fused feature is compared with the teacher's
# level (pre-ReLU stage features, then its pooled feature) by the hierarchical context loss
# (full size, then pooled 4x4, 2x2, 1x1). The loss warms up linearly over the first epoch
# (the paper: 20 of 240 epochs).
# Train the teacher first: python tools/train.py configs/baselines/resnet56_fashionmnist.py
_base_ = ['../_base_/datasets/fashion_mnist_15k.py', '../_base_/schedules/sgd_cosine_4e.py',
          '../_base_/default_runtime.py']

teacher_checkpoint = 'work_dirs/resnet56_fashionmnist/epoch_4.pth'
model = dict(
    type='SingleTeacherDistiller',
    student=dict(cfg_path='mmkd::models/resnet20_fashionmnist.py'),
    teacher=dict(cfg_path='mmkd::models/resnet56_fashionmnist.py',
                 checkpoint=teacher_checkpoint),
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
    dry_run_shape=(1, 28, 28))
custom_hooks = [dict(type='TeacherEvaluationHook'),
                dict(type='DistillLossScheduleHook', warmup=1, losses=['loss_review'])]
