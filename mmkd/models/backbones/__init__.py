from .cifar_resnet import CIFARResNet
from .cifar_vgg import CIFARVGG
from .wide_resnet import WideResNet

__all__ = ['CIFARResNet', 'CIFARVGG', 'WideResNet']
