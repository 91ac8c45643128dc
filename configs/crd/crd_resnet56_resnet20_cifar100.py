# CRD's CIFAR-100 setting: ResNet-56 -> ResNet-20, CE + 0.8 * CRD, 16384 negatives from the
# other classes, batch 64, 240 epochs (the authors' train_student.py defaults). Needs
# data/cifar100 and the teacher: python tools/train.py configs/baselines/resnet56_cifar100.py
_base_ = ['../_base_/distill/resnet56_resnet20_cifar100.py']

model = dict(
    recorders=dict(feat=dict(type='ModuleOutputs', source='neck', item=0)),
    connectors=dict(
        embed_s=dict(type='EmbedConnector', input='student.feat', out_channels=128),
        embed_t=dict(type='EmbedConnector', input='teacher.feat', out_channels=128)),
    losses=dict(loss_crd=dict(
        type='CRDLoss', student='embed_s', teacher='embed_t', num_samples=50000,
        num_negatives=16384, temperature=0.07, momentum=0.5, feat_dim=128,
        negatives='other_classes', loss_weight=0.8)))
custom_hooks = [dict(type='TeacherEvaluationHook'), dict(type='ContrastMemoryHook')]
train_dataloader = dict(batch_size=64)  # the CRD benchmark's batch
