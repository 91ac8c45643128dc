# The short schedule of mmkd's Fashion-MNIST tables: 1 warm-up epoch, then a
# cosine decay over 3 epochs.
_base_ = ['./sgd_cosine.py']
max_epochs = 4
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, T_max=max_epochs - 1, eta_min=0,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
