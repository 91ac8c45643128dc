"""Building a student or teacher from a config file or dict, and loading a
teacher's checkpoint with errors that say what does not fit."""
import copy
import importlib
import os.path as osp
from typing import Optional, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from mmkd.registry import MODELS, TASK_SCOPES


class TeacherCheckpointError(RuntimeError):
    """The teacher's checkpoint does not fit the teacher."""


def resolve_config_path(path: str) -> str:
    """Turn ``scope::rel/path.py`` into the file shipped in that package."""
    if '::' not in path:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config file {path!r} does not exist.')
        return path
    scope, rel = path.split('::', 1)
    try:
        package = importlib.import_module(scope)
    except ImportError as err:
        raise FileNotFoundError(f'config {path!r}: package {scope!r} is not installed.') from err
    configs = osp.join(osp.dirname(package.__file__), '.mim', 'configs')
    if not osp.isdir(configs):
        raise FileNotFoundError(
            f'config {path!r}: {scope} has no configs installed beside it ({configs}); '
            'reinstall it from its repository (pip install -e . or pip install .).')
    full = osp.join(configs, rel)
    if not osp.isfile(full):
        raise FileNotFoundError(f'config {path!r}: {full} does not exist.')
    return full


def load_config(path: str) -> Config:
    """Read a config given as a file path or ``mmpretrain::``/``mmdet::``/
    ``mmseg::``/``mmkd::`` path."""
    return Config.fromfile(resolve_config_path(path))


def model_cfg_from(net_cfg: dict, role: str) -> Tuple[dict, Optional[str]]:
    """The model dict and default scope described by a student/teacher entry.

    ``net_cfg`` is either a model dict (``type=...``) or
    ``dict(cfg_path=..., **overrides)``: the model of that config file, with
    the overrides merged in and its top-level ``data_preprocessor`` used
    unless the model names its own.
    """
    if not isinstance(net_cfg, dict):
        raise TypeError(f'{role} must be a dict (a model config, or cfg_path=...); '
                        f'got {type(net_cfg).__name__}.')
    net_cfg = copy.deepcopy(dict(net_cfg))
    net_cfg.pop('checkpoint', None)  # the teacher's weights, not a model argument
    for key in ('preprocess', 'input_size'):  # how a teacher gets its inputs (teacher_inputs.py)
        net_cfg.pop(key, None)
    cfg_path = net_cfg.pop('cfg_path', None)
    if cfg_path is None:
        if 'type' not in net_cfg:
            raise ValueError(f'{role} needs either cfg_path=<config file> or an inline model dict '
                             f'with a type; got keys {sorted(net_cfg)}.')
        return net_cfg, None
    cfg = load_config(cfg_path)
    if 'model' not in cfg:
        raise ValueError(f'{role} config {cfg_path} has no `model`.')
    model = ConfigDict(copy.deepcopy(cfg.model.to_dict()))
    if 'data_preprocessor' in cfg and 'data_preprocessor' not in model:
        model['data_preprocessor'] = copy.deepcopy(cfg.data_preprocessor)
    model = model.to_dict()
    if net_cfg:  # overrides merge recursively, as in config inheritance (`_delete_` works)
        model = Config._merge_a_into_b(net_cfg, model)
    return model, cfg.get('default_scope')


def build_model_from_cfg(model_cfg: dict, scope: Optional[str] = None) -> nn.Module:
    """Build a model dict in ``scope`` (the scope of the config it came from, or
    the package its type names: ``'mmpretrain.TimmClassifier'``).

    Nested dicts become ``ConfigDict``s, as in a model built from a config
    file (mmdet reads e.g. ``train_cfg.rpn`` as attributes).
    """
    model_cfg = ConfigDict(copy.deepcopy(model_cfg))
    model_type = model_cfg.get('type')
    if scope is None and '_scope_' not in model_cfg and isinstance(model_type, str) and \
            model_type.split('.', 1)[0] in (*TASK_SCOPES, 'mmkd') and '.' in model_type:
        # 'mmpretrain.TimmClassifier': its own parts are that package's too.
        scope, model_cfg['type'] = model_type.split('.', 1)
    if scope is None and '_scope_' not in model_cfg:
        scope = _owner_scope(model_type)
    if scope is not None:
        model_cfg.setdefault('_scope_', scope)
    elif '_scope_' not in model_cfg and DefaultScope.get_current_instance() is None:
        model_cfg['_scope_'] = 'mmkd'
    return MODELS.build(model_cfg)


def _owner_scope(model_type) -> Optional[str]:
    """The task package a bare model type belongs to, so that the model and its
    parts are built in that package's scope; ``None`` for mmkd's own models.

    Raises:
        KeyError: several packages have a model of that name: the message
            lists them and how to choose.
    """
    if not isinstance(model_type, str) or '.' in model_type or model_type in MODELS.module_dict:
        return None
    owners = [s for s in TASK_SCOPES if MODELS.get(f'{s}.{model_type}') is not None]
    if len(owners) > 1:
        raise KeyError(
            f'{model_type!r} is a model of {owners}: add _scope_={owners[0]!r} (or another '
            f'of them) to the model dict, or write type={owners[0] + "." + model_type!r}.')
    return owners[0] if owners else None


def build_model_from_config(cfg: Config) -> nn.Module:
    """The config's model built as MMEngine's Runner builds it.

    The top-level ``data_preprocessor`` is merged into the model dict (the
    model's own wins), the model is built in the config's default scope
    (``mmkd`` when it names none) and ``init_weights()`` is called.

    Args:
        cfg: A complete config (with ``model``).

    Returns:
        The model, on the CPU.

    Example:
        >>> cfg = load_config('configs/kd/kd_resnet56_resnet8_fashionmnist.py')
        >>> model = build_model_from_config(cfg)
    """
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmkd')):
        model = build_model_from_cfg(model_cfg)
        if hasattr(model, 'init_weights'):
            model.init_weights()
    return model


def _strip_prefix(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _wrapped_net_state(state: dict, own: dict) -> dict:
    """A checkpoint of the wrapped net alone (a torchvision or timm state dict)
    for a wrapper whose keys all sit under one prefix (``model.``)."""
    heads = {k.split('.', 1)[0] for k in own}
    if len(heads) != 1 or not state or set(state) & set(own):
        return state
    head = f'{heads.pop()}.'
    return {head + k: v for k, v in state.items()} if all(
        head + k in own for k in state) else state


def load_teacher_checkpoint(teacher: nn.Module, path: str) -> None:
    """Load ``path`` into ``teacher``; raise with the keys that do not fit.

    Accepts MMEngine checkpoints, DDP ones (``module.``), plain state dicts,
    checkpoints of a distiller (its ``student.`` weights) and those of a net
    that the teacher wraps (torchvision's, timm's), from a file or
    any scheme of MMEngine's ``CheckpointLoader`` (``https://``,
    ``torchvision://``...), read safely (see :mod:`mmkd.utils.checkpoint`).
    """
    if '://' not in path and not osp.isfile(osp.expanduser(path)):
        raise FileNotFoundError(
            f'teacher checkpoint {path!r} does not exist. Train the teacher first '
            f'(python tools/train.py <teacher config>) and point teacher.checkpoint at its '
            f'work_dirs/<name>/best_*.pth or epoch_N.pth.')
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise TeacherCheckpointError(f'{path} holds no state dict.')
    if state and all(k.startswith('module.') for k in state):
        state = _strip_prefix(state, 'module.')
    if any(k.startswith('student.') for k in state):
        state = _strip_prefix(state, 'student.')
    own = teacher.state_dict()
    state = _wrapped_net_state(state, own)
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in own if k in state and hasattr(state[k], 'shape')
                  and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:

        def show(keys):
            return f'{len(keys)} {keys[:8]}{" ..." if len(keys) > 8 else ""}'

        raise TeacherCheckpointError(
            f'teacher checkpoint {path} does not fit the teacher ({type(teacher).__name__}): '
            f'missing keys {show(missing)}; unexpected keys {show(unexpected)}; shape '
            f'mismatches {show(mismatched)}. Is it the checkpoint of this teacher config?')
    teacher.load_state_dict(state, strict=True)
