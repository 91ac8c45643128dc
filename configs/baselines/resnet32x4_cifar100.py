# ResNet32x4 alone on CIFAR-100 (240 epochs): a teacher of ReviewKD's CIFAR-100 table.
_base_ = ['../models/resnet32x4_cifar100.py', '../_base_/datasets/cifar100.py',
          '../_base_/schedules/cifar_sgd_240e.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=64)  # the CRD benchmark's batch
