# Decoupled KD, the paper's CIFAR-100 row ResNet-56 -> ResNet-20 (71.97 top-1 in the paper):
# alpha 1, beta 2 (mdistiller configs/cifar100/dkd/res56_res20.yaml), tau 4, CE weight 1,
# warm-up 20 epochs, 240 epochs of SGD 0.05 (batch 64, x0.1 at 150/180/210).
# Needs data/cifar100 and the teacher (work_dirs/resnet56_cifar100/epoch_240.pth).
_base_ = ['../_base_/distill/resnet56_resnet20_cifar100.py']

model = dict(
    recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
    losses=dict(loss_dkd=dict(type='DKDLoss', student='logits', teacher='logits', alpha=1.0,
                              beta=2.0, tau=4.0)))
custom_hooks = [dict(type='TeacherEvaluationHook'),
                dict(type='DistillLossScheduleHook', warmup=20, losses=['loss_dkd'])]
train_dataloader = dict(batch_size=64)  # the CRD benchmark's batch
