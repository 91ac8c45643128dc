"""Factors on a distiller's losses, each set by one controller, multiplied together."""
from typing import Dict, Iterable, Mapping

#: Key of the student's own (task) losses among the scaled names.
TASK = 'task'


class LossScales:
    """The factor on each distillation loss and on the student's task losses.

    Several controllers may scale losses at once: the two-stage loop
    (:class:`~mmkd.engine.StagedTrainLoop`) switches losses on and off per
    stage, :class:`~mmkd.engine.DistillLossScheduleHook` warms them up and
    stops them. Each controller writes only its own factors, under its own
    name; the factor applied to a loss is the product of every controller's
    factor for it (1 where a controller says nothing), so stages and
    schedules compose. A factor of 0 switches a loss off: it is neither
    computed nor backpropagated, and the teachers do not run while every
    distillation loss is off.

    Args:
        losses: Names of the distillation losses.

    Example:
        >>> scales = LossScales(['loss_kd', 'loss_hint'])
        >>> scales.set('stage', {'loss_kd': 0.0, TASK: 0.0})
        >>> scales.set('schedule', {'loss_hint': 0.5})
        >>> scales['loss_hint'], scales['loss_kd'], scales[TASK]
        (0.5, 0.0, 0.0)
    """

    def __init__(self, losses: Iterable[str]):
        self.losses = list(losses)
        self._factors: Dict[str, Dict[str, float]] = {}

    def _check(self, names: Iterable[str]) -> None:
        unknown = sorted(set(names) - set(self.losses) - {TASK})
        if unknown:
            raise KeyError(f'no distillation loss {unknown}; losses: {self.losses} (and '
                           f'{TASK!r} for the student\'s own losses).')

    def set(self, controller: str, factors: Mapping[str, float]) -> None:
        """Replace every factor of ``controller`` by ``factors`` (name -> factor)."""
        self._check(factors)
        self._factors[controller] = {name: float(f) for name, f in factors.items()}

    def clear(self, controller: str) -> None:
        """Forget ``controller``'s factors."""
        self._factors.pop(controller, None)

    def __getitem__(self, name: str) -> float:
        self._check([name])
        factor = 1.0
        for factors in self._factors.values():
            factor *= factors.get(name, 1.0)
        return factor

    @property
    def task(self) -> float:
        """The factor on the student's own losses."""
        return self[TASK]

    def any_distillation_on(self) -> bool:
        """Whether some distillation loss has a non-zero factor."""
        return any(self[name] != 0 for name in self.losses)

    def as_dict(self) -> Dict[str, float]:
        """The applied factor of every loss, and of the task losses."""
        return {name: self[name] for name in [*self.losses, TASK]}
