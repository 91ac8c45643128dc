# The CIFAR-100 schedule of the CRD benchmark (used by ReviewKD): SGD 0.05 for batch 64,
# weight decay 5e-4, 240 epochs, x0.1 at epochs 150, 180 and 210.
max_epochs = 240
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[150, 180, 210], gamma=0.1)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)
