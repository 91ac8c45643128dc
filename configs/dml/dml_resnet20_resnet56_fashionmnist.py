# Deep Mutual Learning in a heterogeneous cohort: a ResNet-20 and a ResNet-56 learn from
# each other (the small net gains most; the large one learns from it too).
_base_ = ['./dml_resnet8x2_fashionmnist.py']

model = dict(
    _delete_=True,
    type='MutualLearner',
    members=dict(resnet20=dict(cfg_path='mmkd::models/resnet20_fashionmnist.py'),
                 resnet56=dict(cfg_path='mmkd::models/resnet56_fashionmnist.py')),
    loss=dict(type='DMLLoss', tau=1.0, loss_weight=1.0),
    order='sequential')
# Per-member optimizer settings go under `members`, e.g.
# optim_wrapper = dict(members=dict(resnet56=dict(optimizer=dict(lr=0.05))))
