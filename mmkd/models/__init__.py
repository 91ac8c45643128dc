"""Backbones the knowledge-distillation literature benchmarks on, and an
adapter for torchvision classifiers (teachers from outside OpenMMLab)."""
from .backbones import CIFARVGG, CIFARResNet, WideResNet
from .torchvision_classifier import TorchvisionClassifier

__all__ = ['CIFARResNet', 'CIFARVGG', 'TorchvisionClassifier', 'WideResNet']
