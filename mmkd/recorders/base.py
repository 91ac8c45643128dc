"""Base recorder: a forward hook on one module, found by its dotted path."""
import difflib
from abc import ABCMeta, abstractmethod
from collections import deque
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Deque, List, Optional, Tuple

import torch
from torch import nn

#: Called after each capture of a started recorder.
CaptureCallback = Callable[[], None]


class RecorderPathError(KeyError):
    """A recorder names a module path the model does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RecordNotFoundError(RuntimeError):
    """A record was read before its module ran (often a wrong call_index)."""


def resolve_module(model: nn.Module, path: str, owner: str = 'model') -> nn.Module:
    """Return ``model``'s submodule at dotted ``path`` or name the nearest ones."""
    modules = dict(model.named_modules())
    if path in modules:
        return modules[path]
    nearest = difflib.get_close_matches(path, list(modules), n=5, cutoff=0.5)
    if not nearest:  # fall back on the children of the longest existing prefix
        parent = path.rsplit('.', 1)[0] if '.' in path else ''
        while parent and parent not in modules:
            parent = parent.rsplit('.', 1)[0] if '.' in parent else ''
        prefix = f'{parent}.' if parent else ''
        nearest = [n for n in modules if n.startswith(prefix) and n.count('.') == prefix.count('.')
                   and n][:8]
    raise RecorderPathError(
        f'{owner} ({type(model).__name__}) has no module {path!r}; nearest existing module '
        f'paths: {nearest}. Print `dict(model.named_modules()).keys()` for the full list.')


class BaseRecorder(metaclass=ABCMeta):
    """What a distiller needs of a recorder: a named value captured in a forward.

    A recorder is attached to a net once (:meth:`attach`), then started and
    stopped around each forward (:meth:`start` / :meth:`stop`, or ``with
    recorder:``); :meth:`get` returns the value of the last forward.
    Implementations: :class:`ModuleRecorder` (a hook on one module:
    :class:`~mmkd.recorders.ModuleOutputs`, :class:`~mmkd.recorders.ModuleInputs`)
    and :class:`~mmkd.recorders.StageFeatures` (one module recorder per
    stage, placed once from the net's structure).
    """

    #: Path of the module the recorder hangs on (the root of what it covers).
    source: str = ''
    #: Name of the net it is attached to, for messages.
    owner: str = 'model'

    @abstractmethod
    def attach(self, model: nn.Module, owner: str = 'model') -> 'BaseRecorder':
        """Bind to ``model``; raises :class:`RecorderPathError` for a bad path."""

    @property
    def located(self) -> bool:
        """Whether the recorder knows where its value is (see :meth:`probe`)."""
        return True

    def probe(self) -> ContextManager:
        """Hooks that find the value's position during one forward at build time
        (the distiller runs it once); nothing by default."""
        return nullcontext()

    @abstractmethod
    def start(self, on_capture: Optional[CaptureCallback] = None) -> 'BaseRecorder':
        """Install the hooks and forget earlier values.

        Args:
            on_capture: Called after every capture (e.g. to end the forward
                once every record of a group is complete).
        """

    @abstractmethod
    def stop(self) -> None:
        """Remove the hooks; the values stay readable until :meth:`reset`."""

    def __enter__(self) -> 'BaseRecorder':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @abstractmethod
    def reset(self) -> None:
        """Forget the values (frees their memory until the next forward)."""

    @property
    @abstractmethod
    def can_stop_early(self) -> bool:
        """Whether completeness is known before the forward ends."""

    @property
    @abstractmethod
    def complete(self) -> bool:
        """Whether the value of this forward has been captured (and will not change)."""

    @abstractmethod
    def decide_clone(self) -> bool:
        """After a forward without copies, copy from now on where a later in-place
        op overwrote the value (unless the choice was made in the config).
        Returns whether it copies."""

    @abstractmethod
    def get(self) -> Any:
        """The value of the last forward."""

    def norm_layers(self) -> Optional[List[Optional[nn.Module]]]:
        """The normalisation layer that produced each recorded item, where the
        recorder knows it (``None`` when it does not)."""
        return None

    @abstractmethod
    def describe(self) -> str:
        """The recorder, for messages."""


class ModuleRecorder(BaseRecorder):
    """Records a value each time one module runs, while started.

    ``call_index`` picks the call whose value :meth:`get` returns (a module
    such as the ``relu`` of a ResNet block runs twice per forward); the
    other calls are counted, not kept (nor copied).

    Values are references by default. Where a later in-place op (``out +=
    identity``, ``ReLU(inplace=True)``) would overwrite the recorded tensor,
    ``clone=True`` stores a copy; ``clone=None`` leaves the choice to
    :meth:`decide_clone`, which the distiller calls after a forward of its
    dry run. A reference that was overwritten is refused by :meth:`get`
    rather than returned wrong.

    Args:
        source: Dotted module path in the recorded model, e.g.
            ``'backbone.layer3.2.relu'``.
        call_index: Which call of the module to keep (0 = first,
            -1 = last).
        clone: Copy the value when captured (see above).
        item: Select one element when the value is a tuple or list (e.g. a
            level of an FPN's outputs).
    """

    def __init__(self, source: str, call_index: int = 0, clone: Optional[bool] = None,
                 item: Optional[int] = None):
        self.source = source
        self.call_index = call_index
        self.clone = clone
        self.item = item
        self.module: Optional[nn.Module] = None
        self.owner = 'model'
        self._calls = 0
        # (value, tensor version at capture) of the kept call(s) only: the call at a
        # non-negative call_index, or the last |call_index| calls for a negative one.
        self._kept: Deque[Tuple[Any, Optional[int]]] = deque(
            maxlen=1 if call_index >= 0 else -call_index)
        self._handle = None
        self._on_capture: Optional[CaptureCallback] = None

    def attach(self, model: nn.Module, owner: str = 'model') -> 'ModuleRecorder':
        self.owner = owner
        self.module = resolve_module(model, self.source, owner)
        return self

    @abstractmethod
    def _register(self, module: nn.Module):
        """Register the torch hook; return its handle."""

    def start(self, on_capture: Optional[CaptureCallback] = None) -> 'ModuleRecorder':
        if self.module is None:
            raise RuntimeError(f'{self.describe()} is not attached to a model; call attach().')
        self.reset()
        self._on_capture = on_capture
        self._handle = self._register(self.module)
        return self

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._on_capture = None

    def _capture(self, value: Any) -> None:
        index = self._calls
        self._calls += 1
        if self.call_index < 0 or index == self.call_index:  # other calls: counted only
            if self.item is not None:
                if not isinstance(value, (tuple, list)):
                    raise TypeError(f'{self.describe()}: item={self.item} given but the value '
                                    f'is a {type(value).__name__}, not a tuple or list.')
                value = value[self.item]
            version = None
            if isinstance(value, torch.Tensor):
                if self.clone:
                    value = value.clone()
                else:
                    version = value._version
            self._kept.append((value, version))
        if self._on_capture is not None:
            self._on_capture()

    def reset(self) -> None:
        self._calls = 0
        self._kept.clear()

    @property
    def num_calls(self) -> int:
        """How many times the module ran since :meth:`start`."""
        return self._calls

    @property
    def can_stop_early(self) -> bool:
        return self.call_index >= 0

    @property
    def complete(self) -> bool:
        return self.can_stop_early and self._calls > self.call_index

    def _kept_pair(self) -> Tuple[Any, Optional[int]]:
        n = self._calls
        if not -n <= self.call_index < n:
            raise RecordNotFoundError(
                f'{self.describe()}: the module ran {n} time(s) in this forward, so call_index='
                f'{self.call_index} has no value. Valid call indices: {list(range(n)) or "none"}.')
        return self._kept[0]

    def overwritten(self) -> bool:
        """Whether an in-place op changed the kept tensor after capture."""
        value, version = self._kept_pair()
        return version is not None and value._version != version

    def decide_clone(self) -> bool:
        if self.clone is None:
            self.clone = self._calls > 0 and self.overwritten()
        return bool(self.clone)

    def get(self) -> Any:
        """The value at ``call_index`` of the last forward."""
        if self.overwritten():
            raise RecordNotFoundError(
                f'{self.describe()}: the recorded tensor was changed in place after it was '
                'captured (e.g. by `+=` or ReLU(inplace=True)); set clone=True on this recorder.')
        return self._kept_pair()[0]

    def describe(self) -> str:
        return (f'{type(self).__name__}(source={self.source!r}, call_index={self.call_index}) '
                f'on {self.owner}')
