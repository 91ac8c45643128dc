"""mmkd: knowledge distillation for the OpenMMLab stack."""
from .utils.versions import check_versions

check_versions()  # one clear message for an untested stack, before mmcv fails deep inside

from .utils import register_config_scope  # noqa: E402
from .version import __version__  # noqa: E402

# Importing mmkd makes ``mmkd::`` configs resolvable and MMEngine's
# checkpoint loader safe on torch >= 2.6 (see mmkd.utils.checkpoint).
register_config_scope()

__all__ = ['__version__']
