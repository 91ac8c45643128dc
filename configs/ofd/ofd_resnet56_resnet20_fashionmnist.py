# OFD (Heo et al., ICCV 2019): ResNet-56 teacher -> ResNet-20 student on Fashion-MNIST.
# Pre-ReLU features of every stage of both nets (found by StageFeatures); the teacher's
# through a margin ReLU whose margins come from its BNs; the student's through a 1x1
# conv + BN per stage; partial L2, stage weights 2^-(n-i), divided by batch size and 1000.
# Train the teacher first: python tools/train.py configs/baselines/resnet56_fashionmnist.py
_base_ = ['../_base_/datasets/fashion_mnist_15k.py', '../_base_/schedules/sgd_cosine_4e.py',
          '../_base_/default_runtime.py']

teacher_checkpoint = 'work_dirs/resnet56_fashionmnist/epoch_4.pth'
model = dict(
    type='SingleTeacherDistiller',
    student=dict(cfg_path='mmkd::models/resnet20_fashionmnist.py'),
    teacher=dict(cfg_path='mmkd::models/resnet56_fashionmnist.py',
                 checkpoint=teacher_checkpoint),
    recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
    connectors=dict(
        feats_s=dict(type='ConnectorList', connector=dict(type='ConvBNConnector'),
                     input='student.feats', like='teacher.feats'),
        feats_t=dict(type='MarginReLU', input='teacher.feats')),
    losses=dict(loss_ofd=dict(type='OFDLoss', student='feats_s', teacher='feats_t',
                              normalizer=1000)),
    dry_run_shape=(1, 28, 28))
