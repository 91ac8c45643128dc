"""Registration of mmkd's modules and of the ``mmkd::`` config scope."""
import importlib
import os.path as osp

from mmengine.config import config as config_module
from mmengine.config import utils as config_utils
from mmengine.registry import DefaultScope

#: The directory of the mmkd package that is imported (its ``.mim`` holds the configs).
PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
_mmengine_installed_path = config_module.get_installed_path


def _installed_path(package: str) -> str:
    """MMEngine's ``get_installed_path``, except that mmkd is where it is imported from.

    MMEngine looks for ``<location of the distribution>/mmkd``, which is not
    the package for a PEP 660 editable install (the location is
    site-packages, the package is the source tree).
    """
    if package == 'mmkd':
        return PACKAGE_DIR
    return _mmengine_installed_path(package)


def register_config_scope() -> None:
    """Let ``mmkd::path/to/config.py`` resolve in ``_base_`` and ``cfg_path``.

    MMEngine looks configs of ``pkg::`` up in ``<pkg>/.mim/configs`` of the
    installed package named in its ``MODULE2PACKAGE`` table; for mmkd that is
    the package Python imports, whatever the install route (editable with
    old or current pip, wheel, sdist).
    """
    config_utils.MODULE2PACKAGE.setdefault('mmkd', 'mmkd')
    config_module.get_installed_path = _installed_path


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
