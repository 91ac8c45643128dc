"""Registration of mmkd's modules and of the ``mmkd::`` config scope."""
import importlib

from mmengine.config import utils as config_utils
from mmengine.registry import DefaultScope


def register_config_scope() -> None:
    """Let ``mmkd::path/to/config.py`` resolve in ``_base_`` and ``cfg_path``.

    MMEngine looks configs of ``pkg::`` up in ``<pkg>/.mim/configs`` of the
    installed package named in its ``MODULE2PACKAGE`` table.
    """
    config_utils.MODULE2PACKAGE.setdefault('mmkd', 'mmkd')


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every module that registers into mmkd's registries.

    Args:
        init_default_scope: Make ``mmkd`` the current default scope unless
            one is set already (MMEngine's convention).
    """
    for module in ('mmkd.models', 'mmkd.recorders', 'mmkd.connectors', 'mmkd.losses',
                   'mmkd.distillers', 'mmkd.engine', 'mmkd.datasets', 'mmkd.evaluation'):
        importlib.import_module(module)
    if init_default_scope and DefaultScope.get_current_instance() is None:
        DefaultScope.get_instance('mmkd', scope_name='mmkd')
