# ImageNet distillation schedule of OFD: SGD 0.1 for batch 256, weight decay 1e-4,
# 100 epochs, x0.1 at epochs 30, 60 and 90.
max_epochs = 100
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[30, 60, 90], gamma=0.1)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=256)
