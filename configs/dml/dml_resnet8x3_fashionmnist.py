# Deep Mutual Learning with a cohort of three ResNet-8: each member mimics the mean KL
# towards its two peers. Same data and schedule as the two-member cohort.
_base_ = ['./dml_resnet8x2_fashionmnist.py']

model = dict(members=dict(resnet8_3=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py')))
