"""Backbones the knowledge-distillation literature benchmarks on."""
from .backbones import CIFARResNet, CIFARVGG, WideResNet

__all__ = ['CIFARResNet', 'CIFARVGG', 'WideResNet']
