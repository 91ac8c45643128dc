# WRN-28-4 on CIFAR-100 (200 epochs): the teacher of OFD's CIFAR-100 setting.
_base_ = ['../models/wrn28_4_cifar100.py', '../_base_/datasets/cifar100.py',
          '../_base_/schedules/cifar_sgd_200e.py', '../_base_/default_runtime.py']
