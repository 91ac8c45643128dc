# The paper's CIFAR-100 setting (Zhang et al., CVPR 2018, Table 1: ResNet-32 pair,
# 68.99 alone -> 71.19 / 70.75 with DML): SGD with Nesterov momentum 0.9, learning rate 0.1
# divided by 10 every 60 epochs, 200 epochs, batch 64. Needs CIFAR-100 in data/cifar100
# (see configs/_base_/datasets/cifar100.py); not measured here.
_base_ = ['../_base_/datasets/cifar100.py', '../_base_/schedules/cifar_sgd_200e.py',
          '../_base_/default_runtime.py']

_resnet32 = dict(
    _scope_='mmpretrain', type='ImageClassifier',
    backbone=dict(type='mmkd.CIFARResNet', depth=32, in_channels=3),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=100, in_channels=64,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
model = dict(
    type='MutualLearner',
    members=dict(resnet32_1=_resnet32, resnet32_2=_resnet32),
    loss=dict(type='DMLLoss', tau=1.0, loss_weight=1.0),
    order='sequential')

train_dataloader = dict(batch_size=64)
val_evaluator = dict(_delete_=True, type='CohortMetric',
                     metric=dict(type='mmpretrain.Accuracy', topk=(1, 5)))
test_evaluator = val_evaluator

optim_wrapper = dict(constructor='CohortOptimWrapperConstructor')
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[60, 120, 180],
                        gamma=0.1)]
auto_scale_lr = dict(base_batch_size=64)
