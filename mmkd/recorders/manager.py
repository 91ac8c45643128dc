"""A named group of recorders bound to one model."""
from contextlib import ExitStack
from typing import Dict, Iterator, Mapping

from torch import nn

from mmkd.registry import MODELS
from .base import BaseRecorder


class _RecordsComplete(Exception):
    """Raised from a hook to end a forward once every record is captured."""


class RecorderGroup:
    """Recorders of one model, by name, entered and exited together.

    Args:
        model: The model the recorders attach to.
        recorders: name -> recorder config (or recorder).
        owner: A name for messages (``'student'``, ``'teacher'``).

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
        for name, cfg in recorders.items():
            recorder = cfg if isinstance(cfg, BaseRecorder) else MODELS.build(dict(cfg))
            self.recorders[name] = recorder.attach(model, owner)

    def __contains__(self, name: str) -> bool:
        return name in self.recorders

    def __iter__(self) -> Iterator[str]:
        return iter(self.recorders)

    def __len__(self) -> int:
        return len(self.recorders)

    def recording(self, stop_when_complete: bool = False) -> 'RecorderGroup._Session':
        """Context manager that records; it can end the forward early.

        With ``stop_when_complete`` the forward is interrupted as soon as
        every recorder holds its value, so the layers after the last record
        (e.g. a teacher's head) never run. The interruption is swallowed by
        the context manager. It only applies when every ``call_index`` is
        non-negative.
        """
        return self._Session(self, stop_when_complete)

    class _Session:

        def __init__(self, group: 'RecorderGroup', stop_when_complete: bool):
            self.group = group
            self.stop = stop_when_complete and all(
                r.call_index >= 0 for r in group.recorders.values())
            self._stack = ExitStack()

        def _check_complete(self, _recorder: BaseRecorder) -> None:
            if all(r.complete for r in self.group.recorders.values()):
                raise _RecordsComplete()

        def __enter__(self) -> 'RecorderGroup':
            for recorder in self.group.recorders.values():
                self._stack.enter_context(recorder)
                recorder._on_capture = self._check_complete if self.stop else None
            return self.group

        def __exit__(self, exc_type, exc, tb) -> bool:
            for recorder in self.group.recorders.values():
                recorder._on_capture = None
            self._stack.close()
            return exc_type is _RecordsComplete

    def values(self) -> Dict[str, object]:
        """Every record of the last forward, by name."""
        return {name: rec.get() for name, rec in self.recorders.items()}

    def enable_clone_where_overwritten(self) -> Dict[str, bool]:
        """After a forward without clones, switch ``clone=None`` recorders to
        cloning where an in-place op overwrote the value. Returns the choice."""
        chosen = {}
        for name, rec in self.recorders.items():
            if rec.clone is None:
                rec.clone = rec.num_calls > 0 and rec.overwritten()
            chosen[name] = bool(rec.clone)
        return chosen
