"""Checkpoints of a distributed cohort hold every member."""
from typing import Dict, Optional

from mmengine.hooks import Hook

from mmkd.distillers import MutualLearner
from mmkd.registry import HOOKS
from mmkd.utils import unwrap


def _member_prefix(name: str) -> str:
    return f'members.{name}.'


@HOOKS.register_module()
class CohortCheckpointHook(Hook):
    """Completes and splits the checkpoints of a distributed cohort.

    :class:`CohortRunner` registers it. Rank 0 writes checkpoints but holds
    only member 0; before each save the runner gathers the other members'
    weights, optimizer and scheduler states into :attr:`peer_states`, and
    this hook adds them to the checkpoint, so it has the same content as one
    written by a single-process cohort. On loading, each process keeps only
    its own member's optimizer and scheduler states (the model drops the
    other members' weights itself).
    """

    priority = 'VERY_HIGH'

    def __init__(self):
        self.peer_states: Optional[Dict[str, dict]] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.peer_states:
            return
        for name, state in self.peer_states.items():
            checkpoint['state_dict'].update(
                (_member_prefix(name) + k, v) for k, v in state['model'].items())
            if 'optimizer' in checkpoint and state.get('optimizer') is not None:
                checkpoint['optimizer'][name] = state['optimizer']
            if 'param_schedulers' in checkpoint and state.get('param_schedulers') is not None:
                checkpoint['param_schedulers'][name] = state['param_schedulers']
        self.peer_states = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = unwrap(runner.model)
        if not isinstance(model, MutualLearner) or not model.distributed:
            return
        own = set(model.local_names)
        for key in ('optimizer', 'param_schedulers'):
            part = checkpoint.get(key)
            if isinstance(part, dict):
                for name in [n for n in part if n not in own]:
                    del part[name]
