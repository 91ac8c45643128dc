"""Capture of intermediate values by module path, as context managers."""
from .base import BaseRecorder, RecordNotFoundError, RecorderPathError
from .manager import RecorderGroup
from .module_recorders import ModuleInputs, ModuleOutputs
from .stage_features import StageFeatures

__all__ = ['StageFeatures', 'BaseRecorder', 'ModuleInputs', 'ModuleOutputs', 'RecorderGroup',
           'RecordNotFoundError', 'RecorderPathError']
