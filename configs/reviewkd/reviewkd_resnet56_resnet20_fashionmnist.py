# Knowledge Review (Chen et al., CVPR 2021): ResNet-56 -> ResNet-20 on Fashion-MNIST.
# The student's stage outputs run deepest-first through ABF fusions (ReviewKDConnector);
# each fused feature is compared with the teacher's pre-ReLU stage feature by the
# hierarchical context loss (full size, then pooled 4x4, 2x2, 1x1). The loss warms up
# linearly over the first epoch (the paper: 20 of 240 epochs).
# Train the teacher first: python tools/train.py configs/baselines/resnet56_fashionmnist.py
_base_ = ['../_base_/datasets/fashion_mnist_15k.py', '../_base_/schedules/sgd_cosine_4e.py',
          '../_base_/default_runtime.py']

teacher_checkpoint = 'work_dirs/resnet56_fashionmnist/epoch_4.pth'
model = dict(
    type='SingleTeacherDistiller',
    student=dict(cfg_path='mmkd::models/resnet20_fashionmnist.py'),
    teacher=dict(cfg_path='mmkd::models/resnet56_fashionmnist.py',
                 checkpoint=teacher_checkpoint),
    student_recorders=dict(feats=dict(type='StageFeatures', pre_relu=False)),
    teacher_recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
    connectors=dict(review=dict(type='ReviewKDConnector', input='student.feats',
                                like='teacher.feats')),
    losses=dict(loss_review=dict(type='HCLLoss', student='review', teacher='teacher.feats',
                                 loss_weight=0.6)),
    dry_run_shape=(1, 28, 28))
custom_hooks = [dict(type='TeacherEvaluationHook'),
                dict(type='DistillLossScheduleHook', warmup=1, losses=['loss_review'])]
