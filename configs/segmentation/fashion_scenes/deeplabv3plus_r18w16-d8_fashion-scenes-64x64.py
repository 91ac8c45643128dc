# The teacher of the Fashion-MNIST scene runs: the student config next to this file at twice
# the width (ResNet-18 v1c, stages 16..128 channels), trained 2.5 times as long (3000
# iterations).
_base_ = ['./deeplabv3plus_r18w8-d8_fashion-scenes-64x64.py']

width = 16
model = dict(
    backbone=dict(stem_channels=width, base_channels=width),
    decode_head=dict(in_channels=8 * width, channels=2 * width, c1_in_channels=width,
                     c1_channels=8),
    auxiliary_head=dict(in_channels=4 * width, channels=width))

iters = 3000
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=iters,
                        by_epoch=False)]
train_cfg = dict(max_iters=iters, val_interval=iters)
default_hooks = dict(checkpoint=dict(interval=iters))
