"""Backbones the knowledge-distillation literature benchmarks on."""
from .backbones import CIFARVGG, CIFARResNet, WideResNet

__all__ = ['CIFARResNet', 'CIFARVGG', 'WideResNet']
