# Deep Mutual Learning: two ResNet-20 on Fashion-MNIST (15k images, 4 epochs).
_base_ = ['./dml_resnet8x2_fashionmnist.py']

model = dict(
    _delete_=True,
    type='MutualLearner',
    members=dict(resnet20_1=dict(cfg_path='mmkd::models/resnet20_fashionmnist.py'),
                 resnet20_2=dict(cfg_path='mmkd::models/resnet20_fashionmnist.py')),
    loss=dict(type='DMLLoss', tau=1.0, loss_weight=1.0),
    order='sequential')
