"""mmkd: knowledge distillation for the OpenMMLab stack."""
from .utils import register_config_scope
from .version import __version__

# Importing mmkd makes ``mmkd::`` configs resolvable and MMEngine's
# checkpoint loader safe on torch >= 2.6 (see mmkd.utils.checkpoint).
register_config_scope()

__all__ = ['__version__']
