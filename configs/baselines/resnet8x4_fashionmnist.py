# ResNet8x4 trained alone on Fashion-MNIST (15k training images, 4 epochs).
_base_ = ['../models/resnet8x4_fashionmnist.py', '../_base_/datasets/fashion_mnist_15k.py',
          '../_base_/schedules/sgd_cosine_4e.py', '../_base_/default_runtime.py']
