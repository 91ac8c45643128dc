# ReviewKD's ImageNet setting: ResNet-34 -> ResNet-18 (mmpretrain's models), loss weight 1,
# 100 epochs, no loss warm-up, and pre-ReLU stage features on both nets: as the authors'
# ImageNet code (imagenet_amp.py, models/resnet.py; mdistiller: STU_PREACT, warm-up factor 1
# from its first epoch). Needs data/imagenet and the teacher's weights (mmpretrain's
# resnet34_8xb32_in1k checkpoint, downloaded by you beforehand). bash tools/dist_train.sh <this> 8
_base_ = ['../_base_/datasets/imagenet.py', '../_base_/schedules/imagenet_sgd_100e.py',
          '../_base_/default_runtime.py']

model = dict(
    type='SingleTeacherDistiller',
    student=dict(cfg_path='mmpretrain::resnet/resnet18_8xb32_in1k.py'),
    teacher=dict(cfg_path='mmpretrain::resnet/resnet34_8xb32_in1k.py',
                 checkpoint='checkpoints/resnet34_8xb32_in1k_20210831-f257d4e6.pth'),
    # Levels, shallow to deep: the stage features, then the pooled feature (the neck's output
    # as an N x C x 1 x 1 map), on both nets, as the authors' code.
    recorders=dict(pooled=dict(type='ModuleOutputs', source='neck', item=-1, as_map=True)),
    student_recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
    teacher_recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
    connectors=dict(review=dict(type='ReviewKDConnector', input=['student.feats', 'student.pooled'],
                                like=['teacher.feats', 'teacher.pooled'])),
    losses=dict(loss_review=dict(type='HCLLoss', student='review',
                                 teacher=['teacher.feats', 'teacher.pooled'],
                                 loss_weight=1.0)),
    dry_run_shape=(3, 224, 224))
custom_hooks = [dict(type='TeacherEvaluationHook')]
