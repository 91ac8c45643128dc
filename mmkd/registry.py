"""mmkd's registries: children of MMEngine's root registries.

With ``default_scope='mmkd'`` every component of mmkd is found by its bare
name, MMEngine's through the parent, and those of mmpretrain / mmdet / mmseg
by their scope prefix (``mmpretrain.ResNet``, ``mmdet.RetinaNet``) or, when a
single task package holds a bare name, by that name alone: a config loaded
through ``mmkd::`` stamps ``_scope_='mmkd'`` on its top-level pieces, and a
user who reuses its ``train_pipeline`` builds ``RandomCrop`` in mmkd's scope.
A name that several packages hold is refused with the candidates. The
``locations`` make a registry import the modules that fill it on first use,
so ``custom_imports`` is optional.
"""
import importlib
import logging
from typing import List

from mmengine.logging import print_log
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
from mmengine.registry import DefaultScope
from mmengine.registry import Registry as MMEngineRegistry


def _enclosing_scopes() -> List[str]:
    """Default scopes in effect, innermost first: MMEngine keeps the instances of a
    nested ``overwrite_default_scope`` in creation order."""
    instances = getattr(DefaultScope, '_instance_dict', {})  # MMEngine's own bookkeeping
    return [i.scope_name for i in reversed(list(instances.values()))]


class Registry(MMEngineRegistry):
    """A child registry of MMEngine's that also finds bare names of task packages.

    A bare name mmkd does not register is looked up in the sibling registries
    of the same kind (mmpretrain's, mmdet's, mmseg's...): the version of the
    innermost enclosing default scope that has one wins (a VOC dataset built
    in mmdet's scope gets mmdet's ``RandomFlip``, not MMCV's, even when its
    pipeline came from an ``mmkd::`` config and carries ``_scope_='mmkd'``);
    then MMEngine's root; then a name only one package holds. A name several
    packages hold and no enclosing scope decides is refused by a
    ``KeyError`` that lists them and how to choose.
    """

    def get(self, key: str):
        if not isinstance(key, str) or '.' in key or self.parent is None:
            return super().get(key)
        self.import_from_location()
        if key in self._module_dict:  # mmkd's own components first
            return self._module_dict[key]
        siblings = {scope: sibling for scope, sibling in self.parent.children.items()
                    if sibling is not self}
        for scope in _enclosing_scopes():  # a task package's own version beats the root's
            if scope in siblings and _holds(siblings[scope], key):
                return siblings[scope].module_dict[key]
        found = super().get(key)  # MMEngine's and MMCV's, in the root
        if found is not None:
            return found
        # Only now every other package: a name that one of them alone holds.
        owners = {scope: sibling.module_dict[key] for scope, sibling in siblings.items()
                  if _holds(sibling, key)}
        if len(owners) <= 1:
            return next(iter(owners.values()), None)
        scopes = sorted(owners)
        raise KeyError(
            f'{key!r} is not an mmkd {self.name}, and {scopes} each have one: write '
            f'type={scopes[0] + "." + key!r} (or another of {scopes}), or set _scope_ in '
            'its dict.')


def _holds(registry: MMEngineRegistry, key: str) -> bool:
    """Whether ``registry`` (its modules imported first) registers ``key``; a
    package that fails to import (a missing optional dependency) holds nothing."""
    try:
        registry.import_from_location()
    except Exception as err:  # noqa: BLE001 -- any import-time failure of another package
        print_log(f'mmkd: the {registry.scope} {registry.name} registry could not import its '
                  f'modules ({type(err).__name__}: {err}); it is skipped in the lookup of '
                  f'{key!r}.', logger='current', level=logging.DEBUG)
        return False
    return key in registry.module_dict


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
