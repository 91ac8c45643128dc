# The CIFAR-100 benchmark pair (CRD, RepDistiller, mdistiller): ResNet-56 teacher -> ResNet-20
# student, 240 epochs of SGD (x0.1 at 150 / 180 / 210). A method config inherits this and adds
# its recorders, connectors, losses and its batch size.
# Needs data/cifar100 and the teacher: python tools/train.py configs/baselines/resnet56_cifar100.py
_base_ = ['../datasets/cifar100.py', '../schedules/cifar_sgd_240e.py', '../default_runtime.py']

model = dict(
    type='SingleTeacherDistiller',
    student=dict(cfg_path='mmkd::models/resnet20_cifar100.py'),
    teacher=dict(cfg_path='mmkd::models/resnet56_cifar100.py',
                 checkpoint='work_dirs/resnet56_cifar100/epoch_240.pth'),
    dry_run_shape=(3, 32, 32))
