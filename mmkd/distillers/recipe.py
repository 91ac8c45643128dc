"""Recipes: the distillation part of a config as a file of its own.

A recipe (``configs/recipes/<name>.py``) is a plain config that holds no
model: the records it needs named by role (``source='<logits>'``, found in
each net by :mod:`mmkd.recorders.locate`), its connectors, its losses, and
the hooks that schedule them::

    task = 'classification'
    description = 'Hinton KD: KL between the softened logits'
    distill = dict(
        recorders=dict(logits=dict(type='ModuleOutputs', source='<logits>')),
        losses=dict(loss_kd=dict(type='KDLoss', student='logits', teacher='logits',
                                 tau=4, loss_weight=0.9)),
        hooks=[])

A distiller takes it as ``recipe='mmkd::recipes/kd.py'`` (or ``'kd'``): the
recipe's ``recorders``, ``student_recorders``, ``teacher_recorders``,
``connectors``, ``losses`` and ``teacher_norm`` (the authors' teacher mode)
are merged with the config's own, which win
(recursively, as in config inheritance; ``_delete_=True`` replaces). Its
``hooks`` are runner hooks: ``tools/distill.py`` and ``tools/train.py`` add
them to ``custom_hooks`` (:func:`add_recipe_hooks`); another entry point
needs them written there. A hook's ``warmup_ratio`` (a fraction of the
training) becomes ``warmup`` in the run's own epochs or iterations.

Losses and connectors fed by a per-level record (``fpn`` ->
``fpn_p3`` .. ``fpn_p7``) become one per level (:func:`expand_per_level`);
a loss or connector value ``'<name>'`` (``num_classes='<num_classes>'``) is a
fact of the student's model (:func:`resolve_values`).
"""
import copy
import glob
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.registry import DefaultScope

from mmkd.recorders.locate import locator_class, locator_for, symbol_of
from mmkd.registry import MODELS

from .builder import load_config, model_cfg_from, resolve_config_path
from .errors import DistillerConfigError

#: The distiller arguments a recipe may give.
RECIPE_KEYS = ('recorders', 'student_recorders', 'teacher_recorders', 'connectors', 'losses',
               'teacher_norm')
#: Where mmkd's own recipes are.
RECIPES = 'mmkd::recipes'


def to_plain(value):
    """A config value as plain dicts, lists and tuples (no ``ConfigDict``)."""
    if isinstance(value, (ConfigDict, dict)):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value)
    return value


@dataclass
class Recipe:
    """A recipe file, read.

    Args:
        name: Its name (``'kd'``) or path.
        path: The file.
        task: The task it is for (``'classification'``...), or ``None``.
        description: One line for ``tools/distill.py --list-recipes``.
        block: The distiller arguments it gives (:data:`RECIPE_KEYS`).
        hooks: Its runner hooks.
    """
    name: str
    path: str
    task: Optional[str] = None
    description: str = ''
    block: Dict[str, dict] = field(default_factory=dict)
    hooks: List[dict] = field(default_factory=list)


def recipe_path(recipe: str) -> str:
    """``'kd'`` -> ``'mmkd::recipes/kd.py'``; a path or ``scope::`` path as given."""
    if '::' in recipe or '/' in recipe or recipe.endswith('.py') or osp.isfile(recipe):
        return recipe
    return f'{RECIPES}/{recipe}.py'


def load_recipe(recipe: str) -> Recipe:
    """Read a recipe by name (``'kd'``) or path; refuse keys a distiller does not take."""
    path = recipe_path(recipe)
    try:
        cfg = load_config(path)
    except FileNotFoundError as err:
        raise DistillerConfigError(
            f'recipe {recipe!r}: {err} The recipes mmkd ships: {", ".join(list_recipes())}.'
        ) from err
    distill = to_plain(cfg.get('distill'))
    if not isinstance(distill, dict):
        raise DistillerConfigError(f'recipe {recipe!r} ({path}) has no `distill = dict(...)`.')
    hooks = distill.pop('hooks', None) or []
    unknown = sorted(set(distill) - set(RECIPE_KEYS))
    if unknown:
        raise DistillerConfigError(f'recipe {recipe!r}: distill has keys {unknown} a distiller '
                                   f'does not take; it takes {list(RECIPE_KEYS)} and hooks.')
    name = recipe if path.startswith(RECIPES) else path
    return Recipe(name, path, cfg.get('task'), cfg.get('description', ''), distill, hooks)


def list_recipes() -> List[str]:
    """Names of the recipes mmkd ships."""
    try:
        folder = osp.dirname(resolve_config_path(f'{RECIPES}/kd.py'))
    except FileNotFoundError:
        return []
    return sorted(osp.splitext(osp.basename(p))[0] for p in glob.glob(osp.join(folder, '*.py')))


def merge_recipe(recipe: Recipe, given: Mapping[str, object]) -> Dict[str, object]:
    """The recipe's distiller arguments with ``given`` merged in (``given`` wins;
    a ``None`` in ``given`` is "not given")."""
    out = {}
    for key in RECIPE_KEYS:
        base, own = recipe.block.get(key), given.get(key)
        if base is None or own is None:
            value = own if own is not None else base
        else:
            value = Config._merge_a_into_b({key: copy.deepcopy(to_plain(own))},
                                           {key: copy.deepcopy(base)})[key]
        if value is not None:
            out[key] = to_plain(value)
    return out


def model_class(net_cfg: dict):
    """The class a student/teacher entry builds, without building it (``None``
    if its type is not registered)."""
    model_cfg, scope = model_cfg_from(net_cfg, 'net')
    scope = model_cfg.get('_scope_', scope) or 'mmkd'
    with DefaultScope.overwrite_default_scope(scope):
        try:
            return MODELS.get(model_cfg.get('type', ''))
        except KeyError:
            return None


def check_task(recipe: Recipe, student: dict) -> None:
    """Refuse a recipe of another task than the student's model family."""
    if recipe.task is None:
        return
    cls = model_class(student)
    family = locator_class(cls) if cls is not None else None
    if family is not None and family.task != recipe.task:
        raise DistillerConfigError(
            f'recipe {recipe.name!r} is for {recipe.task}; the student ({cls.__name__}) is a '
            f'{family.task} model: use a {family.task} recipe (e.g. {family.default_recipe!r}).')


def apply_recipe(recipe: str, kwargs: Dict[str, object], who: str = 'Distiller'
                 ) -> Dict[str, object]:
    """A distiller's keyword arguments with the recipe merged in."""
    loaded = load_recipe(recipe)
    if 'student' in kwargs:
        check_task(loaded, kwargs['student'])
    merged = dict(kwargs)
    merged.update(merge_recipe(loaded, kwargs))
    hooks = ', '.join(h.get('type', '?') for h in loaded.hooks)
    print_log(f'{who}: recipe {loaded.name} ({loaded.path})'
              + (f'; its hooks ({hooks}) are runner hooks: tools/train.py and tools/distill.py '
                 'add them to custom_hooks, another entry point needs them there.'
                 if hooks else '.'), logger='current')
    return merged


# --------------------------------------------------------------------------- runner hooks
def _schedule(cfg: Config) -> Tuple[bool, Optional[float]]:
    """(by epoch?, its length) of a config's training loop."""
    train = dict(cfg.get('train_cfg') or {})
    by_epoch = train.get('by_epoch', 'Iter' not in str(train.get('type', '')))
    if 'max_iters' in train and 'max_epochs' not in train:
        by_epoch = False
    return by_epoch, train.get('max_epochs' if by_epoch else 'max_iters')


def recipe_hooks(recipe: Recipe, cfg: Config) -> List[dict]:
    """The recipe's hooks for the run of ``cfg``: named in mmkd's scope, and a
    ``warmup_ratio`` turned into ``warmup`` on the run's own schedule."""
    hooks = []
    by_epoch, length = _schedule(cfg)
    for hook in copy.deepcopy(recipe.hooks):
        if '.' not in hook['type']:
            hook['type'] = f'mmkd.{hook["type"]}'
        ratio = hook.pop('warmup_ratio', None)
        if ratio is not None:
            if length is None:
                raise DistillerConfigError(f'recipe {recipe.name!r}: warmup_ratio needs '
                                           'train_cfg.max_epochs or max_iters.')
            hook.setdefault('by_epoch', by_epoch)
            hook['warmup'] = ratio * length
        hooks.append(hook)
    return hooks


def add_recipe_hooks(cfg: Config) -> List[str]:
    """Add the hooks of the recipe ``cfg.model`` names to ``cfg.custom_hooks``
    (a hook of a type already there is left to the config). Returns notes."""
    model = cfg.get('model') or {}
    if not isinstance(model, Mapping) or not model.get('recipe'):
        return []
    recipe = load_recipe(model['recipe'])
    added = join_custom_hooks(cfg, recipe_hooks(recipe, cfg))
    return [f'recipe {recipe.name}: added {h}' for h in added]


def join_custom_hooks(cfg: Config, hooks: List[dict]) -> List[dict]:
    """Append to ``cfg.custom_hooks`` the ``hooks`` of a type not there yet
    (the config's own hook of that type wins); returns the ones added."""
    present = {str(h.get('type')).split('.')[-1] for h in cfg.get('custom_hooks') or []}
    added = [h for h in hooks if str(h['type']).split('.')[-1] not in present]
    cfg.custom_hooks = copy.deepcopy(list(cfg.get('custom_hooks') or [])) + added
    return added


# --------------------------------------------------------------------------- build time
def _rename(ref, expanded: Mapping[str, List[str]], level: str):
    if isinstance(ref, (list, tuple)):
        return [_rename(r, expanded, level) for r in ref]
    if not isinstance(ref, str):
        return ref
    net, dot, name = ref.rpartition('.')
    return f'{net}{dot}{name}_{level}' if name in expanded else ref


def _levels_of(name: str, cfg: Mapping, keys, expanded: Mapping[str, List[str]]
               ) -> Optional[List[str]]:
    found = []
    for key in keys:
        refs = cfg.get(key)
        for ref in refs if isinstance(refs, (list, tuple)) else [refs]:
            if isinstance(ref, str) and ref.rpartition('.')[2] in expanded:
                found.append(expanded[ref.rpartition('.')[2]])
    if not found:
        return None
    if any(levels != found[0] for levels in found):
        raise DistillerConfigError(f'{name!r} reads per-level records with different levels '
                                   f'{found}.')
    return found[0]


def expand_per_level(connectors: Mapping[str, dict], losses: Mapping[str, dict],
                     levels: Mapping[str, List[str]]) -> Tuple[Dict[str, dict], Dict[str, dict]]:
    """One connector and one loss per level where they read per-level records.

    ``loss_fpn`` reading record ``fpn`` (levels ``p3`` .. ``p7``) becomes
    ``loss_fpn_p3`` .. ``loss_fpn_p7`` reading ``fpn_p3`` .. ``fpn_p7``; a
    connector reading them becomes one per level as well, and so do the
    losses that read it.
    """
    expanded = dict(levels)
    out_connectors: Dict[str, dict] = {}
    for name, cfg in connectors.items():
        found = _levels_of(name, cfg, ('input', 'like'), expanded) if isinstance(
            cfg, Mapping) else None
        if found is None:
            out_connectors[name] = cfg
            continue
        expanded[name] = found
        for level in found:
            out_connectors[f'{name}_{level}'] = {
                k: _rename(v, expanded, level) if k in ('input', 'like') else v
                for k, v in cfg.items()}
    out_losses: Dict[str, dict] = {}
    for name, cfg in losses.items():
        keys = [k for k in cfg if k != 'type'] if isinstance(cfg, Mapping) else []
        found = _levels_of(name, cfg, keys, expanded) if keys else None
        if found is None:
            out_losses[name] = cfg
            continue
        for level in found:
            out_losses[f'{name}_{level}'] = {k: _rename(v, expanded, level) if k != 'type'
                                             else v for k, v in cfg.items()}
    return out_connectors, out_losses


def collect_levels(groups: Mapping[str, object]) -> Dict[str, List[str]]:
    """The level names of every per-level record, the same on every net."""
    levels: Dict[str, List[str]] = {}
    owners: Dict[str, str] = {}
    for net, group in groups.items():
        for name, found in getattr(group, 'levels', {}).items():
            if name in levels and levels[name] != found:
                raise DistillerConfigError(
                    f'record {name!r} has levels {levels[name]} on {owners[name]} and {found} '
                    f'on {net}: their FPNs differ; record the levels they share by hand '
                    '(ModuleOutputs(source="neck", item=i)).')
            levels.setdefault(name, found)
            owners.setdefault(name, net)
    return levels


def resolve_values(cfgs: Mapping[str, dict], model, what: str) -> Dict[str, dict]:
    """Replace ``'<name>'`` values of loss or connector configs by the facts of
    ``model`` (the student) its locator knows."""
    out = {}
    locator = None
    for name, cfg in cfgs.items():
        if not isinstance(cfg, Mapping) or not any(symbol_of(v) for v in cfg.values()):
            out[name] = cfg
            continue
        locator = locator or locator_for(model)
        out[name] = {k: locator.value(symbol_of(v)) if symbol_of(v) else v
                     for k, v in cfg.items()}
        print_log(f'{what} {name!r}: ' + ', '.join(
            f'{k}={out[name][k]!r}' for k, v in cfg.items() if symbol_of(v)) +
            f' (found in the student, a {type(model).__name__})', logger='current')
    return out
