"""One optimizer wrapper per cohort member (MMEngine's OptimWrapperDict)."""
import copy
from typing import Optional

from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapperDict
from torch import nn

from mmkd.distillers import MutualLearner
from mmkd.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmkd.utils import unwrap


def _merged(base: dict, override: dict) -> dict:
    """``base`` updated with ``override``, nested dicts merged key by key."""
    out = copy.deepcopy(dict(base))
    for key, value in dict(override).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class CohortOptimWrapperConstructor:
    """Builds an ``OptimWrapperDict`` with one wrapper per member of a cohort.

    Every member gets the shared settings of ``optim_wrapper`` (optimizer,
    wrapper type, ``clip_grad``, AMP...), merged with its own overrides under
    ``members=dict(<name>=dict(...))``. Each wrapper covers only its member's
    parameters. A process of a distributed cohort builds the wrapper of its
    own member only. Parameter schedulers given as a list apply to every
    wrapper (MMEngine builds one set per wrapper).

    Args:
        optim_wrapper_cfg: The config's ``optim_wrapper`` without
            ``constructor``/``paramwise_cfg``; may hold ``members``.
        paramwise_cfg: MMEngine's paramwise options, for every member.

    Example (config)::

        optim_wrapper = dict(
            constructor='CohortOptimWrapperConstructor',
            optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4),
            members=dict(resnet56=dict(optimizer=dict(lr=0.05))))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        cfg = copy.deepcopy(dict(optim_wrapper_cfg))
        self.overrides = dict(cfg.pop('members', None) or {})
        self.shared = cfg
        self.paramwise_cfg = paramwise_cfg

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        model = unwrap(model)
        if not isinstance(model, MutualLearner):
            raise TypeError(f'CohortOptimWrapperConstructor builds optimizers for a cohort '
                            f'(MutualLearner); got {type(model).__name__}. Remove `constructor` '
                            'from optim_wrapper.')
        members = model.members
        names = list(model.member_names)
        unknown = sorted(set(self.overrides) - set(names))
        if unknown:
            raise KeyError(f'optim_wrapper.members names {unknown}, which are not members of '
                           f'the cohort {names}.')
        wrappers = {}
        for name, member in members.items():
            cfg = _merged(self.shared, self.overrides.get(name, {}))
            cfg.setdefault('type', 'OptimWrapper')
            if 'optimizer' not in cfg:
                raise KeyError(f'optim_wrapper of member {name!r} has no optimizer; give '
                               'optim_wrapper.optimizer=dict(type=..., lr=...).')
            wrappers[name] = DefaultOptimWrapperConstructor(cfg, self.paramwise_cfg)(member)
        return OptimWrapperDict(**wrappers)
