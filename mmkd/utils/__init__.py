from .checkpoint import (
    CorruptCheckpointError,
    UnsafeCheckpointError,
    load_from_local,
    safe_torch_load,
    torch_load_is_safe,
)
from .dist import exit_after_distributed_run, finish_distributed, setup_cpu_distributed
from .setup_env import register_all_modules, register_config_scope
from .wrappers import unwrap

__all__ = ['CorruptCheckpointError', 'UnsafeCheckpointError', 'exit_after_distributed_run',
           'load_from_local',
           'register_all_modules', 'register_config_scope', 'safe_torch_load',
           'finish_distributed', 'setup_cpu_distributed', 'torch_load_is_safe', 'unwrap']
