# FitNets (Romero et al., ICLR 2015): ResNet-56 teacher -> ResNet-8 student on Fashion-MNIST.
# Stage 1 (1 epoch): the student up to its guided layer (layer2, the middle stage) and a
# 3x3 conv regressor learn to predict the teacher's hint (its layer2 output); the rest of
# the student is frozen. Stage 2 (the 4-epoch schedule of the KD table): the whole student
# with CE + KD, as the paper trains after the hints.
# Train the teacher first: python tools/train.py configs/baselines/resnet56_fashionmnist.py
_base_ = ['../kd/kd_resnet56_resnet8_fashionmnist.py']

model = dict(
    # Added to the inherited logits record, on both nets.
    recorders=dict(hint=dict(type='ModuleOutputs', source='backbone.layer2')),
    connectors=dict(regressor=dict(type='ConvBNConnector', input='student.hint',
                                   like='teacher.hint', kernel_size=3, with_bn=False)),
    losses=dict(loss_hint=dict(type='MSELoss', student='regressor', teacher='hint')))

train_cfg = dict(
    _delete_=True, type='StagedTrainLoop', val_interval=1, stages=[
        dict(name='hint', epochs=1, losses=['loss_hint'], task_loss=0,
             trainable=['student.backbone.stem', 'student.backbone.layer1',
                        'student.backbone.layer2', 'connectors.regressor'],
             optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9,
                                               weight_decay=5e-4, nesterov=True)),
             param_scheduler=[dict(type='CosineAnnealingLR', by_epoch=True, begin=0, T_max=1,
                                   eta_min=0, convert_to_iter_based=True)]),
        # The config's optim_wrapper and param_scheduler (those of the KD table).
        dict(name='kd', epochs=4, losses=['loss_kd']),
    ])
