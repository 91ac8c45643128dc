# The CIFAR schedule of OFD / ReviewKD / CRD: SGD 0.1 (nesterov in OFD's code), weight decay
# 5e-4, 200 epochs, learning rate x0.1 at epochs 100 and 150.
max_epochs = 200
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[100, 150], gamma=0.1)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128)
