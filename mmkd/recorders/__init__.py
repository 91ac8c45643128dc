"""Capture of intermediate values by module path, as context managers."""
from .base import (
    BaseRecorder,
    ModuleRecorder,
    RecorderPathError,
    RecordNotFoundError,
    resolve_module,
)
from .group import RecorderGroup
from .module_recorders import ModuleInputs, ModuleOutputs
from .session import Recording, run_until_recorded
from .stage_features import StageFeatures, StagePosition

__all__ = ['BaseRecorder', 'ModuleInputs', 'ModuleOutputs', 'ModuleRecorder', 'RecorderGroup',
           'Recording', 'RecordNotFoundError', 'RecorderPathError', 'StageFeatures',
           'StagePosition', 'resolve_module', 'run_until_recorded']
