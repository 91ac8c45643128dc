# PKT in the CRD benchmark's CIFAR-100 setting (RepDistiller, the resnet56 -> resnet20
# column): CE (weight 1) + 30000 * PKT on the pooled features, no KD term
# (-r 1 -a 0 -b 30000), 240 epochs, batch 64.
# Needs data/cifar100 and the teacher: python tools/train.py configs/baselines/resnet56_cifar100.py
_base_ = ['../_base_/distill/resnet56_resnet20_cifar100.py']

model = dict(
    recorders=dict(emb=dict(type='ModuleOutputs', source='neck', item=0)),
    losses=dict(loss_pkt=dict(type='PKTLoss', student='emb', teacher='emb',
                              loss_weight=30000.0)))
train_dataloader = dict(batch_size=64)  # the CRD benchmark's batch (PKT scales as 1/batch)
