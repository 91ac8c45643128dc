# Two teachers (ResNet-56, ResNet-20) -> ResNet-8 on Fashion-MNIST: KD towards the
# arithmetic mean of the teachers' softened probabilities.
# Train the teachers first: python tools/train.py configs/baselines/resnet56_fashionmnist.py
#                           python tools/train.py configs/baselines/resnet20_fashionmnist.py
_base_ = ['../_base_/datasets/fashion_mnist_15k.py', '../_base_/schedules/sgd_cosine_4e.py',
          '../_base_/default_runtime.py']

model = dict(
    type='MultiTeacherDistiller',
    student=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py'),
    teachers=dict(
        r56=dict(cfg_path='mmkd::models/resnet56_fashionmnist.py',
                 checkpoint='work_dirs/resnet56_fashionmnist/epoch_4.pth'),
        r20=dict(cfg_path='mmkd::models/resnet20_fashionmnist.py',
                 checkpoint='work_dirs/resnet20_fashionmnist/epoch_4.pth')),
    recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),  # on every net
    losses=dict(loss_kd=dict(type='MultiTeacherKDLoss', student='student.logits',
                             teacher=['r56.logits', 'r20.logits'], combine='arithmetic',
                             tau=4, loss_weight=0.9)),
    dry_run_shape=(1, 28, 28))
