"""Run by tests/test_install_routes.py: import mmkd from one install only, resolve
``mmkd::`` configs (MMEngine's ``_base_`` and mmkd's ``cfg_path``) and build a model.

Usage: python -S install_probe.py VENV_SITE_PACKAGES INSTALL_SITE USER_CONFIG
"""
import os
import sys

venv_site, install_site, user_config = sys.argv[1:4]
import site  # noqa: E402

# The route under test first, with its .pth files (an editable install's finder module has
# the same name as the environment's own), then the stack, without the .pth files that
# add the environment's own mmkd.
site.addsitedir(install_site)
sys.path.append(venv_site)
from mmengine.config import Config  # noqa: E402

import mmkd  # noqa: E402
from mmkd.distillers.builder import build_model_from_cfg, model_cfg_from  # noqa: E402
from mmkd.utils import register_all_modules  # noqa: E402

register_all_modules(False)
print('mmkd from', os.path.dirname(mmkd.__file__))
cfg = Config.fromfile(user_config)  # `_base_ = ['mmkd::...']`, resolved by MMEngine
student, scope = model_cfg_from(cfg.model.student, 'student')  # cfg_path='mmkd::...'
model = build_model_from_cfg(student, scope)
print('built', type(model).__name__, sum(p.numel() for p in model.parameters()))
