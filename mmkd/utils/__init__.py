from .checkpoint import (
    UnsafeCheckpointError,
    checkpoint_safe_globals,
    load_from_local,
    safe_torch_load,
)
from .dist import setup_cpu_distributed
from .setup_env import register_all_modules, register_config_scope
from .wrappers import unwrap

__all__ = ['UnsafeCheckpointError', 'checkpoint_safe_globals', 'load_from_local',
           'safe_torch_load', 'register_all_modules', 'register_config_scope',
           'setup_cpu_distributed', 'unwrap']
