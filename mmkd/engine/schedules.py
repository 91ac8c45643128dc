"""Learning-rate schedules that follow a changed number of epochs."""
import copy
from typing import List, Optional

from mmengine.config import Config


def fit_schedule_to_epochs(cfg: Config, planned_epochs: Optional[int]) -> List[str]:
    """Adapt ``cfg.param_scheduler`` to ``train_cfg.max_epochs`` when that changed.

    A schedule is written for the config's own length (``planned_epochs``,
    read before ``--cfg-options``). When a run asks for another length
    (``--cfg-options train_cfg.max_epochs=1`` for a smoke run), the epoch-based
    schedulers tied to the planned length follow the new one: an ``end`` equal
    to the planned length becomes the new length, a cosine ``T_max`` that ran
    to the planned end runs to the new end, and a scheduler that would begin
    at or after the new last epoch is dropped (MMEngine refuses it). Others
    are left alone.

    Args:
        cfg: The merged config (changed in place).
        planned_epochs: ``train_cfg.max_epochs`` before the overrides.

    Returns:
        One line per change, for the log.
    """
    train_cfg = cfg.get('train_cfg') or {}
    epochs = train_cfg.get('max_epochs')
    schedulers = cfg.get('param_scheduler')
    if (not train_cfg.get('by_epoch', True) or not schedulers or epochs is None
            or planned_epochs is None or epochs == planned_epochs):
        return []
    single = isinstance(schedulers, dict)
    notes, kept = [], []
    for i, scheduler in enumerate([schedulers] if single else list(schedulers)):
        scheduler = copy.deepcopy(scheduler)
        where = f'param_scheduler[{i}] ({scheduler.get("type")})'
        if not scheduler.get('by_epoch', True):
            kept.append(scheduler)
            continue
        begin = scheduler.get('begin', 0)
        if begin >= epochs:
            notes.append(f'{where} begins at epoch {begin}, after the last of {epochs} epochs '
                         f'(train_cfg.max_epochs, {planned_epochs} in the config): dropped.')
            continue
        if scheduler.get('end') == planned_epochs:
            scheduler['end'] = epochs
            notes.append(f'{where} ends at epoch {epochs} (was {planned_epochs}).')
        t_max = scheduler.get('T_max')
        if t_max is not None and begin + t_max == planned_epochs:
            scheduler['T_max'] = epochs - begin
            notes.append(f'{where} T_max = {epochs - begin} (was {t_max}), to end with '
                         'training.')
        kept.append(scheduler)
    cfg.param_scheduler = kept[0] if single and kept else kept
    return notes
