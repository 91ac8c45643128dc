"""Capture of intermediate values by module path, as context managers."""
from .base import BaseRecorder, RecordNotFoundError, RecorderPathError
from .manager import RecorderGroup
from .module_recorders import ModuleInputs, ModuleOutputs

__all__ = ['BaseRecorder', 'ModuleInputs', 'ModuleOutputs', 'RecorderGroup',
           'RecordNotFoundError', 'RecorderPathError']
