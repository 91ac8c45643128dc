# SP in the CRD benchmark's CIFAR-100 setting (RepDistiller, the resnet56 -> resnet20
# column): CE (weight 1) + 3000 * SP on the last residual group's output, no KD term
# (-r 1 -a 0 -b 3000), 240 epochs, batch 64.
# Needs data/cifar100 and the teacher: python tools/train.py configs/baselines/resnet56_cifar100.py
_base_ = ['../_base_/distill/resnet56_resnet20_cifar100.py']

model = dict(
    recorders=dict(last=dict(type='ModuleOutputs', source='backbone.layer3')),
    losses=dict(loss_sp=dict(type='SPLoss', student='last', teacher='last',
                             loss_weight=3000.0)))
train_dataloader = dict(batch_size=64)  # the CRD benchmark's batch (SP scales as 1/batch)
