"""A named group of recorders bound to one net."""
from contextlib import ExitStack
from typing import Callable, Dict, Iterable, Iterator, Mapping, Optional

from torch import nn

from mmkd.registry import MODELS

from .base import BaseRecorder
from .locate import locate_records
from .session import Recording


class RecorderGroup:
    """Recorders of one net, by name, started and stopped together.

    Args:
        model: The net the recorders attach to.
        recorders: name -> recorder config (or recorder). A config may name
            what it records by role (``source='<logits>'``): the net's
            locator finds it (:mod:`mmkd.recorders.locate`); a role found per
            level gives one record per level (``fpn`` -> ``fpn_p3``, ...).
        owner: A name for messages (``'student'``, ``'teacher'``).

    Attributes:
        levels: Records given by a per-level role -> their level names.

    Example:
        >>> group = RecorderGroup(teacher, dict(feat=dict(type='ModuleOutputs',
        ...                                            source='backbone.layer3')), 'teacher')
        >>> with group.recording(stop_when_complete=True):
        ...     teacher(x, mode='tensor')   # ends right after layer3
        >>> group.values()['feat'].shape
    """

    def __init__(self, model: nn.Module, recorders: Mapping, owner: str = 'model'):
        self.owner = owner
        self.model = model
        self.recorders: Dict[str, BaseRecorder] = {}
        recorders, self.levels = locate_records(model, recorders, owner)
        for name, cfg in recorders.items():
            self.add(name, cfg)

    def add(self, name: str, recorder) -> BaseRecorder:
        """Attach a recorder (or build one from its config) under ``name``."""
        if name in self.recorders:
            raise KeyError(f'{self.owner} already has a record {name!r}.')
        if not isinstance(recorder, BaseRecorder):
            recorder = MODELS.build(dict(recorder))
        self.recorders[name] = recorder.attach(self.model, self.owner)
        return recorder

    def __contains__(self, name: str) -> bool:
        return name in self.recorders

    def __iter__(self) -> Iterator[str]:
        return iter(self.recorders)

    def __len__(self) -> int:
        return len(self.recorders)

    def __getitem__(self, name: str) -> BaseRecorder:
        return self.recorders[name]

    def recording(self, stop_when_complete: bool = False,
                  names: Optional[Iterable[str]] = None) -> Recording:
        """A :class:`~mmkd.recorders.Recording` of the group's recorders (or
        of ``names`` only), ending the forward early if asked."""
        chosen = self.recorders if names is None else {n: self.recorders[n] for n in names}
        return Recording(chosen.values(), stop_when_complete)

    def locate(self, forward: Callable[[], object]) -> None:
        """Run ``forward`` once under the probes of the recorders that must learn
        their position from the net (see :meth:`BaseRecorder.probe`)."""
        pending = [r for r in self.recorders.values() if not r.located]
        if not pending:
            return
        with ExitStack() as stack:
            for recorder in pending:
                stack.enter_context(recorder.probe())
            forward()

    def values(self) -> Dict[str, object]:
        """Every record of the last forward, by name."""
        return {name: rec.get() for name, rec in self.recorders.items()}

    def decide_clones(self) -> Dict[str, bool]:
        """After a forward without copies, make ``clone=None`` recorders copy where
        an in-place op overwrote their value. Returns the choice by name."""
        return {name: rec.decide_clone() for name, rec in self.recorders.items()}

    def reset(self) -> None:
        """Forget every value (frees the records' memory until the next forward)."""
        for recorder in self.recorders.values():
            recorder.reset()
