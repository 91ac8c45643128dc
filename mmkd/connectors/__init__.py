"""Learnable (student side) and fixed (teacher side) feature transforms."""
from .abf import ABF
from .auxiliary_classifier import AuxiliaryClassifier
from .base import (
    BaseConnector,
    ConnectorConfigError,
    RecordFacts,
    channels_of,
    infer_connector_config,
)
from .connector_list import ConnectorList
from .conv_bn import ConvBNConnector
from .embed import EmbedConnector
from .identity import IdentityConnector
from .linear import LinearConnector
from .margin_relu import MarginReLU, margin_from_bn
from .mgd import MGDConnector
from .review import ReviewKDConnector
from .vid import GaussianPrediction, VIDRegressor

__all__ = ['ABF', 'AuxiliaryClassifier', 'BaseConnector', 'ConnectorConfigError',
           'ConnectorList', 'ConvBNConnector', 'IdentityConnector', 'LinearConnector', 'MarginReLU',
           'RecordFacts', 'ReviewKDConnector', 'channels_of', 'infer_connector_config',
           'margin_from_bn',
           'GaussianPrediction', 'VIDRegressor',
           'EmbedConnector', 'MGDConnector']
