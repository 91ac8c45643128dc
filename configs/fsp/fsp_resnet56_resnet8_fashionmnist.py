# FSP (Yim et al., CVPR 2017): ResNet-56 teacher -> ResNet-8 student on Fashion-MNIST.
# Stage 1 (1 epoch): the student's backbone learns the teacher's FSP matrices (the flow
# between the stem and each stage's output); stage 2 (the 4-epoch schedule of the KD
# table): the whole student on the labels alone, as in the paper. Both nets have widths
# 16/16/32/64, so the matrices compare without connectors.
# Train the teacher first: python tools/train.py configs/baselines/resnet56_fashionmnist.py
_base_ = ['../kd/kd_resnet56_resnet8_fashionmnist.py']

model = dict(
    recorders=dict(
        _delete_=True,
        stem=dict(type='ModuleOutputs', source='backbone.stem'),
        layer1=dict(type='ModuleOutputs', source='backbone.layer1'),
        layer2=dict(type='ModuleOutputs', source='backbone.layer2'),
        layer3=dict(type='ModuleOutputs', source='backbone.layer3')),
    losses=dict(
        _delete_=True,
        # Pairs (stem, layer1), (layer1, layer2), (layer2, layer3) of each net. The sum of
        # squares starts near 1e5 here (the teacher's features are ~5x larger). 1e-4: with
        # 1e-3 the FSP epoch grew the student's conv weights 3-8x and the student ended 9
        # points lower (configs/fsp/README.md).
        loss_fsp=dict(type='FSPLoss', student=['stem', 'layer1', 'layer2', 'layer3'],
                      teacher=['stem', 'layer1', 'layer2', 'layer3'], loss_weight=1e-4)))

train_cfg = dict(
    _delete_=True, type='StagedTrainLoop', val_interval=1, stages=[
        dict(name='fsp', epochs=1, trainable=['student.backbone'], losses=['loss_fsp'],
             task_loss=0,
             optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9,
                                               weight_decay=5e-4, nesterov=True)),
             param_scheduler=[dict(type='CosineAnnealingLR', by_epoch=True, begin=0, T_max=1,
                                   eta_min=0, convert_to_iter_based=True)]),
        # The config's optim_wrapper and param_scheduler (those of the KD table).
        dict(name='task', epochs=4, losses=[]),
    ])
