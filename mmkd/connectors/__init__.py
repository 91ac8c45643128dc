"""Learnable (student side) and fixed (teacher side) feature transforms."""
from .base import BaseConnector
from .conv_bn import ConvBNConnector
from .identity import IdentityConnector

__all__ = ['BaseConnector', 'ConvBNConnector', 'IdentityConnector']
