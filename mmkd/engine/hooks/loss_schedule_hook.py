"""Warm-up and stop of distillation losses."""
from typing import List, Optional

from mmengine.hooks import Hook

from mmkd.distillers import Distiller
from mmkd.registry import HOOKS
from mmkd.utils import unwrap

#: Name under which the hook writes its factors into a distiller's loss scales.
CONTROLLER = 'schedule'


@HOOKS.register_module()
class DistillLossScheduleHook(Hook):
    """Scales distillation losses by a warm-up factor and stops them.

    Before each iteration, ``progress`` is the training done once that
    iteration ends, in epochs (fractional) or iterations. The factor is
    ``min(1, progress / warmup)``, and 0 once ``progress > stop``: with
    ``stop=150`` the first 150 epochs distil, the rest do not. The factor is
    logged as ``distill_scale``. It multiplies the factors other controllers
    set (the stages of :class:`~mmkd.engine.StagedTrainLoop`), see
    :class:`~mmkd.distillers.LossScales`.

    Args:
        warmup: Length of the linear warm-up; 0 disables it.
        stop: Epochs (or iterations) after which the losses are off.
        by_epoch: Whether ``warmup`` and ``stop`` count epochs.
        losses: Names of the losses to schedule; all by default.

    Example:
        >>> custom_hooks = [dict(type='mmkd.DistillLossScheduleHook', warmup=5, stop=150)]
    """

    priority = 'NORMAL'

    def __init__(self, warmup: float = 0, stop: Optional[float] = None, by_epoch: bool = True,
                 losses: Optional[List[str]] = None):
        if warmup < 0 or (stop is not None and stop <= 0):
            raise ValueError(f'warmup must be >= 0 and stop > 0; got warmup={warmup}, '
                             f'stop={stop}.')
        self.warmup = warmup
        self.stop = stop
        self.by_epoch = by_epoch
        self.losses = losses

    def factor(self, progress: float) -> float:
        """The loss factor for the iteration that ends at ``progress``."""
        if self.stop is not None and progress > self.stop + 1e-9:
            return 0.0
        if self.warmup > 0:
            return min(1.0, progress / self.warmup)
        return 1.0

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = unwrap(runner.model)
        if not isinstance(model, Distiller):
            raise TypeError(f'DistillLossScheduleHook needs a distiller; the model is a '
                            f'{type(model).__name__}.')
        if self.by_epoch:
            per_epoch = max(1, len(runner.train_dataloader))
            progress = runner.epoch + (batch_idx + 1) / per_epoch
        else:
            progress = runner.iter + 1
        scale = self.factor(progress)
        names = list(model.distill_losses) if self.losses is None else self.losses
        model.loss_scales.set(CONTROLLER, {name: scale for name in names})
        runner.message_hub.update_scalar('train/distill_scale', scale)
