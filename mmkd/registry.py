"""mmkd's registries: children of MMEngine's root registries.

With ``default_scope='mmkd'`` every component of mmkd is found by its bare
name, MMEngine's through the parent, and those of mmpretrain / mmdet / mmseg
by their scope prefix (``mmpretrain.ResNet``, ``mmdet.RetinaNet``). The
``locations`` make a registry import the modules that fill it on first use,
so ``custom_imports`` is optional.
"""
import importlib

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

_MODEL_LOCATIONS = ['mmkd.models', 'mmkd.recorders', 'mmkd.connectors', 'mmkd.losses',
                    'mmkd.distillers']

RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, locations=['mmkd.engine'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, locations=['mmkd.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, locations=['mmkd.engine'])
LOG_PROCESSORS = Registry('log processor', parent=MMENGINE_LOG_PROCESSORS,
                          locations=['mmkd.engine'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, locations=['mmkd.datasets'])
DATA_SAMPLERS = Registry('data sampler', parent=MMENGINE_DATA_SAMPLERS,
                         locations=['mmkd.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS)
MODELS = Registry('model', parent=MMENGINE_MODELS, locations=_MODEL_LOCATIONS)
MODEL_WRAPPERS = Registry('model wrapper', parent=MMENGINE_MODEL_WRAPPERS,
                          locations=['mmkd.engine'])
WEIGHT_INITIALIZERS = Registry('weight initializer', parent=MMENGINE_WEIGHT_INITIALIZERS)
OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS, locations=['mmkd.engine'])
OPTIM_WRAPPERS = Registry('optim wrapper', parent=MMENGINE_OPTIM_WRAPPERS,
                          locations=['mmkd.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor',
                                      parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                      locations=['mmkd.engine'])
PARAM_SCHEDULERS = Registry('parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS,
                            locations=['mmkd.engine'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, locations=['mmkd.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMENGINE_EVALUATOR)
VISUALIZERS = Registry('visualizer', parent=MMENGINE_VISUALIZERS)
VISBACKENDS = Registry('vis_backend', parent=MMENGINE_VISBACKENDS)

# Task packages whose registries must exist for ``mmpretrain.X``-style names
# to resolve from the mmkd scope. Their registry modules are light to import.
TASK_SCOPES = {'mmpretrain': 'mmpretrain.registry', 'mmdet': 'mmdet.registry',
               'mmseg': 'mmseg.registry'}


def import_task_registries() -> list:
    """Import the registries of the installed task packages; returns their scopes."""
    found = []
    for scope, module in TASK_SCOPES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        found.append(scope)
    return found


import_task_registries()
