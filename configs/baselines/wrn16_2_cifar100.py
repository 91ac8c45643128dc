# WRN-16-2 alone on CIFAR-100 (200 epochs).
_base_ = ['../models/wrn16_2_cifar100.py', '../_base_/datasets/cifar100.py',
          '../_base_/schedules/cifar_sgd_200e.py', '../_base_/default_runtime.py']
