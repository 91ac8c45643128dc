"""One forward with recorders started, ended early once every record is complete."""
from contextlib import ExitStack
from typing import Any, Callable, Iterable, List, Optional

from .base import BaseRecorder


class _RecordsComplete(BaseException):
    """Raised from a capture callback to end a forward once every record is captured.

    A ``BaseException`` (like ``KeyboardInterrupt``), so that a model's own
    ``except Exception`` around part of its forward cannot swallow it and run on.
    """


class Recording:
    """Starts recorders for one forward and, optionally, ends the forward early.

    With ``stop_when_complete`` the forward is interrupted as soon as every
    recorder holds its value, so the layers after the last record (e.g. a
    teacher's head, a detector's proposal decoding) never run; the
    interruption is swallowed on exit. It only applies when every recorder
    can tell completeness early (non-negative call indices).

    Args:
        recorders: Attached recorders.
        stop_when_complete: End the forward once all are complete.

    Example:
        >>> with Recording([ModuleOutputs('backbone.layer2').attach(net)], True):
        ...     net(x, mode='tensor')      # stops right after layer2
    """

    def __init__(self, recorders: Iterable[BaseRecorder], stop_when_complete: bool = False):
        self.recorders: List[BaseRecorder] = list(recorders)
        self.stop = stop_when_complete and all(r.can_stop_early for r in self.recorders)
        self.stopped_early = False
        self._stack = ExitStack()

    def _check_complete(self) -> None:
        if all(r.complete for r in self.recorders):
            raise _RecordsComplete()

    def __enter__(self) -> 'Recording':
        callback = self._check_complete if self.stop else None
        for recorder in self.recorders:
            recorder.start(callback)
            self._stack.callback(recorder.stop)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._stack.close()
        self.stopped_early = exc_type is _RecordsComplete
        return self.stopped_early


def run_until_recorded(forward: Callable[[], Any], recorders: Iterable[BaseRecorder]
                       ) -> Optional[Any]:
    """Call ``forward`` while ``recorders`` record; end it once all are complete.

    Args:
        forward: The net's forward, e.g. ``lambda: net(x, mode='tensor')``.
        recorders: Attached recorders.

    Returns:
        What ``forward`` returned, or ``None`` if it was ended early.
    """
    result = None
    with Recording(recorders, stop_when_complete=True):
        result = forward()
    return result
