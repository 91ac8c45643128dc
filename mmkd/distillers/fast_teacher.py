"""An exact fast path for frozen teachers.

A frozen teacher in eval mode computes a fixed function, so it can be run
more cheaply without changing what it computes (up to float32 round-off):

* **BN folding** (``fold_bn``): each ``Conv2d`` whose output only an
  eval-mode ``BatchNorm2d`` reads runs as one convolution with the BN folded
  into its weight and bias, and the BN passes its input through. Nothing is
  replaced: the conv and BN modules stay where they are, with their own
  parameters and buffers (the teacher's ``state_dict`` is unchanged; the
  folded weights are non-persistent buffers of the conv), so module paths,
  records and checkpoints keep their meaning. A record of the BN's output is
  the folded conv's output; a pre-ReLU record is still the ReLU's input. A
  pair is left alone where a record reads the conv's output or the BN's
  input, where anything else reads the conv's output, and in a teacher run
  on batch statistics (``teacher_norm='batch_stats'``). A pair computes as
  built while its BN trains (e.g. under
  :func:`~mmkd.distillers.norm_mode.batch_statistics`) and while a hook
  added later reads its conv's output or its BN's input (an analysis
  hook sees the values it expects). Weights loaded later (resume,
  ``teacher_in_checkpoint``) are folded again.
* **Channels-last** (``channels_last``): convolutional teachers hold their
  weights, and get their inputs, in channels-last memory format. Their
  records are read in the usual (contiguous) layout: a loss sees the same
  tensors as without the fast path.
* **Frozen inference graphs** (``freeze``): a largest part of the teacher
  that holds no record and at least half of its convolutions (e.g. the
  backbone, when the logits or the FPN are distilled) runs as a TorchScript
  graph traced on its inputs, frozen and optimised for inference
  (``torch.jit.freeze``, ``torch.jit.optimize_for_inference``: on CPUs,
  oneDNN convolutions with prepacked weights on blocked tensors). Every new
  input signature is first run both ways and the graph's output compared
  with the eager part's; graphs are dropped when a weight changes. The part
  runs eagerly in training mode, with gradients, under autocast, on
  non-finite inputs (oneDNN's ReLU maps NaN to 0, which would hide them
  from the distiller's check of the records; for the same reason a float32
  overflow inside a frozen part, which needs activations beyond 3e38, may
  reach the records as finite values), when a hook sits inside it,
  and for good where the trace fails or warns that it may not generalise
  (control flow on values). Smaller parts stay eager:
  each graph's entry and exit convert the memory layout, which cost more
  than the graph gained on single stages (``docs/benchmark.md``).
  TorchScript is deprecated in PyTorch 2; without it, this setting does
  nothing.
* **torch.compile** (``compile``, off by default): every largest part of
  the teacher that holds no record is compiled instead (no freezing); the
  part falls back to eager execution whenever a hook is added inside it.

The build time of compiled or frozen parts is logged after their first
calls. The distiller applies the fast path once its records are located and
its dry run made (:func:`accelerate_teachers`), then runs the dry run again
and compares every teacher record with the unmodified teacher's: a teacher
whose records differ keeps no fast path (with a warning). ``torch.inference_mode``
is not used: on the CPUs measured it gave no measurable gain over
``no_grad``, and its tensors cannot be saved for backward, which losses that
multiply a student tensor by a teacher record would do.

Example (config)::

    model = dict(type='SingleTeacherDistiller', ...,
                 teacher_fast_path=dict(fold_bn=True, channels_last=True, freeze=True,
                                        compile=False))
"""
import copy
import itertools
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Set, Union

import torch
from mmengine.logging import MMLogger, print_log
from torch import nn
from torch.nn.modules import module as module_globals
from torch.nn.modules.batchnorm import _BatchNorm
from torch.overrides import TorchFunctionMode

from mmkd.recorders import (
    BaseRecorder,
    ModuleInputs,
    ModuleRecorder,
    RecordNotFoundError,
    StageFeatures,
)

from .errors import DistillerConfigError
from .memory_format import (
    channels_last_input,
    is_channels_last,
    suits_channels_last,
    to_channels_last,
    to_standard_format,
)
from .teacher import indexed_tensors, map_tensors

#: The fast path's settings and their defaults (chosen by measurement, docs/benchmark.md).
FAST_PATH_DEFAULTS = dict(fold_bn=True, channels_last=True, freeze=True, compile=False)
#: Input signatures for which a frozen part checks (or builds) a graph; later ones run eagerly.
FROZEN_SIGNATURES = 8
#: Share of the teacher's convolutions a part needs to be frozen: a graph's entry and exit
#: convert the memory layout, which costs more than the graph gains on a few layers
#: (docs/benchmark.md).
FROZEN_MIN_SHARE = 0.5
#: Relative tolerance of the build-time check of the records against the plain teacher's.
CHECK_RTOL = 1e-3

_PLAIN_CLASS = '_mmkd_plain_class'
_FOLD_PARTNER = '_mmkd_fold_partner'
_FOLD_SOURCES = '_mmkd_fold_sources'
_WEIGHT, _BIAS = 'mmkd_folded_weight', 'mmkd_folded_bias'

#: Tensor functions that read only a tensor's metadata, never its values.
_METADATA = frozenset((
    'dim', 'ndim', 'ndimension', 'size', 'shape', 'numel', 'nelement', 'dtype', 'device',
    'layout', 'stride', 'storage_offset', 'is_contiguous', 'is_floating_point', 'is_complex',
    'element_size', 'requires_grad', 'is_leaf', 'grad_fn', 'is_cuda', 'is_cpu', 'is_meta',
    'is_sparse', 'is_quantized', 'is_mkldnn', 'get_device', 'data_ptr', 'names', '__len__',
    'new_zeros', 'new_ones', 'new_empty', 'new_full', '_version'))


def fast_path_settings(value: Union[bool, None, Mapping]) -> Dict[str, Any]:
    """The complete fast-path settings of a ``teacher_fast_path`` value.

    Args:
        value: ``True``/``None`` (the defaults, :data:`FAST_PATH_DEFAULTS`),
            ``False`` (off), or a dict overriding some of ``fold_bn``,
            ``channels_last``, ``freeze`` (bools) and ``compile`` (a bool, or a dict of
            ``torch.compile`` keyword arguments, e.g. ``dict(mode='max-autotune')``).

    Returns:
        A dict with the four keys.
    """
    if value is None or value is True:
        return dict(FAST_PATH_DEFAULTS)
    if value is False:
        return dict(fold_bn=False, channels_last=False, freeze=False, compile=False)
    if not isinstance(value, Mapping):
        raise DistillerConfigError(f'teacher_fast_path must be True, False or a dict of '
                                   f'{sorted(FAST_PATH_DEFAULTS)}; got {value!r}.')
    unknown = sorted(set(value) - set(FAST_PATH_DEFAULTS))
    if unknown:
        raise DistillerConfigError(f'teacher_fast_path: unknown key(s) {unknown}; the keys are '
                                   f'{sorted(FAST_PATH_DEFAULTS)}.')
    settings = {**FAST_PATH_DEFAULTS, **dict(value)}
    for key in ('fold_bn', 'channels_last', 'freeze'):
        if not isinstance(settings[key], bool):
            raise DistillerConfigError(f'teacher_fast_path.{key} must be True or False; got '
                                       f'{settings[key]!r}.')
    if not isinstance(settings['compile'], (bool, Mapping)):
        raise DistillerConfigError('teacher_fast_path.compile must be True, False or a dict of '
                                   f'torch.compile arguments; got {settings["compile"]!r}.')
    return settings


# ---------------------------------------------------------------------------- BN folding
def _folding_on(conv: nn.Module, norm: nn.Module) -> bool:
    """Whether a folded pair computes folded now: its BN in eval mode, and no
    hook (added after the fold) that reads the conv's output or the BN's input."""
    return not norm.training and not conv._forward_hooks and not norm._forward_pre_hooks \
        and not module_globals._global_forward_hooks \
        and not module_globals._global_forward_pre_hooks


class _FoldedConv:
    """Mixin of a conv whose eval-mode BN partner is folded into it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _folding_on(self, self.__dict__[_FOLD_PARTNER]):
            return super().forward(x)
        return self._conv_forward(x, getattr(self, _WEIGHT), getattr(self, _BIAS))


class _FoldedNorm:
    """Mixin of a BN folded into the conv before it: passes its input through
    while folding is on (the conv already normalised it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _folding_on(self.__dict__[_FOLD_PARTNER], self):
            return super().forward(x)
        return x


_FOLDED_CLASSES: Dict[type, type] = {}


def _folded_class(cls: type, mixin: type) -> type:
    if cls not in _FOLDED_CLASSES:
        _FOLDED_CLASSES[cls] = type(f'Folded{cls.__name__}', (mixin, cls),
                                    dict(__module__=__name__))
    return _FOLDED_CLASSES[cls]


def _plain_conv_forwards() -> tuple:
    forwards = [nn.Conv2d.forward]
    try:  # mmcv's wrapper only adds empty-tensor handling for torch < 1.4
        from mmcv.cnn.bricks.wrappers import Conv2d as MMCVConv2d
        forwards.append(MMCVConv2d.forward)
    except ImportError:  # pragma: no cover
        pass
    return tuple(forwards)


def _foldable_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and not isinstance(module, _FoldedConv) and \
        type(module).forward in _plain_conv_forwards()


def _foldable_norm(module: nn.Module) -> bool:
    return isinstance(module, _BatchNorm) and not isinstance(module, _FoldedNorm) and \
        type(module).forward in (_BatchNorm.forward, nn.SyncBatchNorm.forward) and \
        module.track_running_stats and module.running_mean is not None and not module.training


@dataclass(frozen=True)
class FoldPair:
    """A conv and the eval-mode BN folded into it (module paths in the teacher)."""
    conv: str
    norm: str


def _tensors(value) -> Iterator[torch.Tensor]:
    return (tensor for _, tensor in indexed_tensors(value))


def _function_name(func) -> str:
    owner = getattr(func, '__self__', None)
    if getattr(func, '__name__', '') == '__get__' and owner is not None:
        return getattr(owner, '__name__', '')  # a property: x.shape, x.dtype...
    return getattr(func, '__name__', '')


class _FoldProbe(TorchFunctionMode):
    """One forward that finds the (conv, BN) pairs that can be folded.

    A pair qualifies when, in every call, the BN's input is the very tensor
    the conv returned, and nothing but that BN reads it (any other torch
    function on it, a record of it, or the net returning it disqualifies the
    conv); every call of the conv and of the BN must be such a pair.
    """

    def __init__(self, net: nn.Module, spots: List[ModuleRecorder]):
        super().__init__()
        self.net = net
        self.spots = spots
        self.paths = {id(m): p for p, m in net.named_modules()}
        self._outputs: Dict[int, tuple] = {}  # id(tensor) -> (tensor, conv path)
        self._inside: List[torch.Tensor] = []  # inputs of the BNs running now
        self.conv_calls: Dict[str, int] = {}
        self.norm_calls: Dict[str, int] = {}
        self.pairs: Dict[tuple, int] = {}
        self.bad: Set[str] = set()  # conv and BN paths that cannot be folded

    def _conv_of(self, tensor) -> Optional[str]:
        if not isinstance(tensor, torch.Tensor):
            return None
        found = self._outputs.get(id(tensor))
        return found[1] if found is not None and found[0] is tensor else None

    def _taint(self, value) -> None:
        for tensor in _tensors(value):
            conv = self._conv_of(tensor)
            if conv is not None:
                self.bad.add(conv)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = _function_name(func)
        if name not in _METADATA:
            for tensor in _tensors((args, kwargs)):
                conv = self._conv_of(tensor)
                if conv is None or (self._inside and self._inside[-1] is tensor):
                    continue
                if name == 'contiguous' and out is tensor:
                    continue
                self.bad.add(conv)
        return out

    def _conv_done(self, module, _args, out) -> None:
        path = self.paths[id(module)]
        self.conv_calls[path] = self.conv_calls.get(path, 0) + 1
        if isinstance(out, torch.Tensor):
            self._outputs[id(out)] = (out, path)
        else:
            self.bad.add(path)

    def _norm_starts(self, module, args) -> None:
        path = self.paths[id(module)]
        self.norm_calls[path] = self.norm_calls.get(path, 0) + 1
        x = args[0] if args else None
        conv = self._conv_of(x)
        if conv is None:
            self.bad.add(path)
        else:
            self.pairs[(conv, path)] = self.pairs.get((conv, path), 0) + 1
        self._inside.append(x)

    def _norm_done(self, _module, _args, _out) -> None:
        self._inside.pop()

    def run(self, forward: Callable[[], Any]) -> List[FoldPair]:
        """Run ``forward`` under the probe; the foldable pairs, in module order."""
        handles = []
        for module in self.net.modules():
            if _foldable_conv(module):
                handles.append(module.register_forward_hook(self._conv_done))
            elif _foldable_norm(module):
                handles.append(module.register_forward_pre_hook(self._norm_starts))
                handles.append(module.register_forward_hook(self._norm_done))
        for spot in self.spots:  # a record that reads a conv's output forbids its folding
            if isinstance(spot, ModuleInputs):
                handles.append(spot.module.register_forward_pre_hook(
                    lambda _m, args: self._taint(args)))
            else:
                handles.append(spot.module.register_forward_hook(
                    lambda _m, _a, out: self._taint(out)))
        try:
            with self:
                self._taint(forward())
        finally:
            for handle in handles:
                handle.remove()
            self._inside = []
        found = []
        for (conv, norm), count in self.pairs.items():
            others = [p for p in self.pairs if (p[0] == conv) != (p[1] == norm)]
            if conv in self.bad or norm in self.bad or others or \
                    count != self.conv_calls.get(conv) or count != self.norm_calls.get(norm):
                continue
            found.append(FoldPair(conv, norm))
        self._outputs = {}
        order = {p: i for i, p in enumerate(self.paths.values())}
        return sorted(found, key=lambda pair: order[pair.conv])


def find_foldable_pairs(net: nn.Module, forward: Callable[[], Any],
                        spots: List[ModuleRecorder]) -> List[FoldPair]:
    """The (conv, eval-mode BN) pairs of ``net`` that can be folded, found by
    running ``forward`` (a full forward of ``net``) once.

    Args:
        net: The teacher.
        forward: Runs ``net`` on a sample input.
        spots: Module recorders attached to ``net`` (what its records read).

    Returns:
        The pairs, in the order of the convs in ``net``.
    """
    return _FoldProbe(net, spots).run(forward)


def _fold_sources(conv: nn.Module, norm: nn.Module) -> tuple:
    tensors = (conv.weight, conv.bias, norm.weight, norm.bias, norm.running_mean,
               norm.running_var)
    return tuple(None if t is None else (t.data_ptr(), t._version, t.device, t.dtype)
                 for t in tensors)


@torch.no_grad()
def _refold(conv: nn.Module) -> None:
    """Compute the folded weight and bias of ``conv`` from the current values."""
    norm = conv.__dict__[_FOLD_PARTNER]
    weight = conv.weight.detach()
    mean, var = norm.running_mean.double(), norm.running_var.double()
    gamma = norm.weight.double() if norm.weight is not None else torch.ones_like(mean)
    beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(mean)
    scale = gamma * torch.rsqrt(var + norm.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    folded = torch.empty_like(weight)  # the weight's memory format (channels-last or not)
    folded.copy_(weight.double() * scale.view(-1, *([1] * (weight.dim() - 1))))
    conv.register_buffer(_WEIGHT, folded, persistent=False)
    conv.register_buffer(_BIAS, ((bias - mean) * scale + beta).to(weight.dtype),
                         persistent=False)
    conv.__dict__[_FOLD_SOURCES] = _fold_sources(conv, norm)


def fold_pairs(net: nn.Module, pairs: List[FoldPair]) -> List[FoldPair]:
    """Fold each pair's BN into its conv, in place (see the module docstring).
    Returns the pairs folded (those whose BN has the conv's channels)."""
    modules = dict(net.named_modules())
    folded = []
    for pair in pairs:
        conv, norm = modules[pair.conv], modules[pair.norm]
        if norm.num_features != conv.out_channels:
            continue
        folded.append(pair)
        conv.__dict__[_FOLD_PARTNER] = norm
        norm.__dict__[_FOLD_PARTNER] = conv
        conv.__dict__[_PLAIN_CLASS] = type(conv)
        norm.__dict__[_PLAIN_CLASS] = type(norm)
        _refold(conv)
        conv.__class__ = _folded_class(type(conv), _FoldedConv)
        norm.__class__ = _folded_class(type(norm), _FoldedNorm)
    return folded


def folded_convs(net: nn.Module) -> List[nn.Module]:
    """The convs of ``net`` that run with a folded BN."""
    return [m for m in net.modules() if isinstance(m, _FoldedConv)]


def refresh_folds(net: nn.Module) -> int:
    """Fold again where a conv's or its BN's weights changed (a load, a device
    move). Returns how many were folded again."""
    stale = [conv for conv in folded_convs(net) if conv.__dict__.get(_FOLD_SOURCES) !=
             _fold_sources(conv, conv.__dict__[_FOLD_PARTNER])]
    for conv in stale:
        _refold(conv)
    return len(stale)


def unfold(net: nn.Module) -> None:
    """Undo :func:`fold_pairs`: every conv and BN computes as before."""
    for module in net.modules():
        if isinstance(module, (_FoldedConv, _FoldedNorm)):
            module.__class__ = module.__dict__.pop(_PLAIN_CLASS)
            for key in (_FOLD_PARTNER, _FOLD_SOURCES):
                module.__dict__.pop(key, None)
            for name in (_WEIGHT, _BIAS):
                module._buffers.pop(name, None)


# ---------------------------------------------------------------------------- record-free parts
def _hooks_inside(modules: List[nn.Module]) -> bool:
    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


class _PartForward:
    """``forward`` of a record-free part of the teacher, run by a faster
    implementation (:class:`_CompiledForward`, :class:`_FrozenForward`) and
    eagerly whenever a hook sits inside the part (a graph would ignore it)."""

    def __init__(self, module: nn.Module, options: dict, report: Optional['TeacherFastPath']):
        self.module = module
        self.options = options
        self.report = report
        self.inside: Optional[List[nn.Module]] = None  # found on the first call

    def eager(self, *args, **kwargs):
        return type(self.module).forward(self.module, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        if self.inside is None:  # hooks on the part itself run outside its forward
            self.inside = [m for m in self.module.modules() if m is not self.module]
        if _hooks_inside(self.inside):
            return self.eager(*args, **kwargs)
        return self.fast(args, kwargs)

    def fast(self, args: tuple, kwargs: dict):
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        """Whether the part has run its fast implementation at least once."""
        raise NotImplementedError

    def __deepcopy__(self, memo) -> '_PartForward':  # a copy builds its own
        return type(self)(memo.get(id(self.module), self.module), self.options, None)


class _CompiledForward(_PartForward):
    """A part compiled with ``torch.compile`` on its first call."""

    compiled = None

    def __getstate__(self) -> dict:  # compiled again, not pickled
        return dict(self.__dict__, compiled=None)

    @property
    def ready(self) -> bool:
        return self.compiled is not None

    def fast(self, args: tuple, kwargs: dict):
        if self.compiled is not None:
            return self.compiled(*args, **kwargs)
        start = time.perf_counter()
        self.compiled = torch.compile(type(self.module).forward.__get__(self.module),
                                      **self.options)
        out = self.compiled(*args, **kwargs)
        if self.report is not None:
            self.report.build_seconds += time.perf_counter() - start
        return out


def _signature(args: tuple) -> tuple:
    return tuple((tuple(a.shape), a.dtype, a.device, a.is_contiguous()) for a in args)


def _autocast_on(device: torch.device) -> bool:
    try:
        return torch.is_autocast_enabled(device.type)
    except TypeError:  # pragma: no cover  (torch < 2.4)
        return torch.is_autocast_enabled()


def _compiling() -> bool:
    compiler = getattr(torch, 'compiler', None)
    return bool(compiler is not None and compiler.is_compiling())


def _weights_state(module: nn.Module) -> tuple:
    """What a frozen graph baked in: every parameter's and buffer's storage
    and version (a load, a device move or an in-place update changes it)."""
    return tuple((t.data_ptr(), t._version, t.requires_grad)
                 for t in itertools.chain(module.parameters(), module.buffers()))


class _Bare(nn.Module):
    """A part to trace without the hooks of its own root (a recorder there
    reads the part's boundary, outside the graph)."""

    def __init__(self, part: nn.Module):
        super().__init__()
        self.part = part

    def forward(self, *args):
        return type(self.part).forward(self.part, *args)


def _clones(args: tuple) -> tuple:
    return tuple(a.clone() for a in args)


_UNSEEN = object()


class _FrozenForward(_PartForward):
    """A part run as a frozen TorchScript inference graph.

    The part is traced on its first eval-mode call without gradients,
    frozen and optimised for inference (``torch.jit.freeze``,
    ``torch.jit.optimize_for_inference``: on CPUs, oneDNN convolutions with
    prepacked weights on blocked tensors). Every new input signature
    (shapes, dtypes, devices, layout) is first run both ways and its graph's
    output compared with the eager output; a signature where no graph agrees
    gets a graph traced on it. The part runs eagerly in training mode, with
    gradients, under autocast, inside an outer trace or compilation (e.g.
    the FLOP count's), for arguments that are not all finite tensors, for
    signatures after the first :data:`FROZEN_SIGNATURES`, and for good if
    tracing fails or warns that the trace may not generalise
    (value-dependent control flow). The graphs are dropped when a parameter
    or buffer is replaced or changed in place (a load, a device move); a
    write through ``.data`` is not seen.
    """

    def __init__(self, module: nn.Module, options: dict, report: Optional['TeacherFastPath']):
        super().__init__(module, options, report)
        self.graphs: List[Any] = []
        self.chosen: Dict[tuple, Optional[Any]] = {}  # signature -> graph (None: eager)
        self.weights: Optional[tuple] = None
        self.failed: Optional[str] = None

    def __getstate__(self) -> dict:  # graphs are rebuilt, not pickled
        return dict(self.__dict__, graphs=[], chosen={}, weights=None)

    @property
    def ready(self) -> bool:
        return bool(self.graphs) or self.failed is not None

    def _graph_may_run(self, args: tuple, kwargs: dict) -> bool:
        """Whether a graph could compute this call (before its finiteness):
        tensor arguments without gradients, no autocast, no outer trace, the
        part and everything in it in eval mode, no failed trace."""
        if torch.jit.is_tracing() or _compiling():  # an outer trace sees the eager part
            return False
        return self.failed is None and not kwargs and bool(args) and \
            all(isinstance(a, torch.Tensor) and not a.requires_grad for a in args) and \
            not _autocast_on(args[0].device) and not self.module.training and \
            not any(m.training for m in self.inside)

    def fast(self, args: tuple, kwargs: dict):
        if not self._graph_may_run(args, kwargs):
            return self.eager(*args, **kwargs)
        signature = _signature(args)
        graph = self.chosen.get(signature, _UNSEEN)
        if graph is None or (graph is _UNSEEN and len(self.chosen) >= FROZEN_SIGNATURES):
            return self.eager(*args)
        weights = _weights_state(self.module)
        if weights != self.weights:
            self.graphs, self.chosen, self.weights = [], {}, weights
            graph = _UNSEEN
        if any(requires_grad for *_, requires_grad in weights):
            return self.eager(*args)  # a trainable part: its graph would drop the gradients
        # oneDNN's ReLU maps NaN to 0: a graph would hide a non-finite input.
        if not all(bool(torch.isfinite(a).all()) for a in args):
            return self.eager(*args)
        if graph is _UNSEEN:
            return self._first_call(signature, args)
        return graph(*args)

    def _agrees(self, graph, args: tuple, expected) -> tuple:
        """The graph's output on ``args`` and why it differs from ``expected``
        (``None`` if it does not)."""
        try:
            out = graph(*_clones(args))
        except Exception as err:  # noqa: BLE001  (a graph that fails on these inputs)
            return None, f'{type(err).__name__}: {err}'.splitlines()[0]
        return out, difference(expected, out)

    def _first_call(self, signature: tuple, args: tuple):
        """Run a new signature eagerly and find (or build) a graph that agrees;
        return the graph's output (every call of a signature with a graph
        gives the graph's values: a resumed run repeats an uninterrupted one
        where each shape has its graph)."""
        start = time.perf_counter()
        expected = self.eager(*_clones(args))
        for graph in self.graphs:
            out, why = self._agrees(graph, args, expected)
            if why is None:
                self.chosen[signature] = graph
                return out
        graph = None
        try:
            graph = self._build(args)
        except Exception as err:  # noqa: BLE001  (a part that cannot be traced runs eagerly)
            why = self.failed = f'{type(err).__name__}: {err}'.splitlines()[0]
        else:
            out, why = self._agrees(graph, args, expected)
        if why is None:
            self.graphs.append(graph)
            self.chosen[signature] = graph
            expected = out
        else:
            self.chosen[signature] = None
            print_log(f'{type(self.module).__name__} (a record-free part of a teacher) runs '
                      f'eagerly on inputs {[s[0] for s in signature]}: {why}',
                      logger=MMLogger.get_current_instance())
        if self.report is not None:
            self.report.build_seconds += time.perf_counter() - start
        return expected

    def _build(self, args: tuple):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            traced = torch.jit.trace(_Bare(self.module).eval(), _clones(args),
                                     check_trace=False)
            graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        doubts = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
        if doubts:
            raise RuntimeError(f'the trace may not generalise ({doubts[0].message})')
        return graph


_PART_FORWARDS = dict(compile=_CompiledForward, freeze=_FrozenForward)


def _convolutions(module: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


def record_free_parts(net: nn.Module, recorded: List[nn.Module],
                      min_convs: int = 0) -> List[str]:
    """Paths of the largest submodules of ``net`` with no recorded module
    inside them (a part's own inputs or outputs may be recorded: module
    recorders read a module's boundary) that have submodules and at least
    ``min_convs`` convolutions (at least one parameter for ``0``); the root
    itself is not one."""
    covered = set()
    for path, module in net.named_modules():
        if path and any(module is r for r in recorded):
            parts = path.split('.')
            covered.update('.'.join(parts[:i]) for i in range(len(parts)))
    found = []

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            path = f'{prefix}{name}'
            if path in covered:
                visit(path + '.', child)
            elif next(child.children(), None) is not None and (
                    _convolutions(child) >= min_convs if min_convs else
                    next(child.parameters(), None) is not None):
                found.append(path)

    visit('', net)
    return found


def replace_parts(net: nn.Module, paths: List[str], kind: str, options: dict,
                  report: Optional['TeacherFastPath'] = None) -> None:
    """Run each part of ``net`` at ``paths`` through ``kind`` (``'compile'``
    or ``'freeze'``; built lazily, on the part's first call)."""
    modules = dict(net.named_modules())
    for path in paths:
        module = modules[path]
        module.__dict__['forward'] = _PART_FORWARDS[kind](module, dict(options), report)


def part_forwards(net: nn.Module) -> List[_PartForward]:
    """The replaced forwards of the parts of ``net``."""
    return [m.__dict__['forward'] for m in net.modules()
            if isinstance(m.__dict__.get('forward'), _PartForward)]


def restore_parts(net: nn.Module) -> None:
    """Undo :func:`replace_parts`: every part runs its own ``forward``."""
    for forward in part_forwards(net):
        del forward.module.__dict__['forward']


# ---------------------------------------------------------------------------- the fast path
class _BeforeTeacherForward:
    """The teacher's forward pre-hook: weights folded again if they changed,
    inputs in channels-last, the compile time reported once."""

    def __init__(self, fast_path: 'TeacherFastPath'):
        self.fast_path = fast_path

    def __call__(self, net: nn.Module, args: tuple, kwargs: dict):
        fast = self.fast_path
        if fast.pairs:
            refresh_folds(net)
        fast.report_build_time()
        if fast.channels_last:
            args = tuple(channels_last_input(a) if i == 0 else a for i, a in enumerate(args))
            if 'inputs' in kwargs:
                kwargs = dict(kwargs, inputs=channels_last_input(kwargs['inputs']))
        return args, kwargs

    def __deepcopy__(self, memo) -> '_BeforeTeacherForward':
        return _BeforeTeacherForward(copy.deepcopy(self.fast_path, memo))


class _RefoldAfterLoad:
    """The teacher's load-state-dict post-hook: fold the loaded weights."""

    def __call__(self, net: nn.Module, _incompatible) -> None:
        refresh_folds(net)


def record_spots(recorder: BaseRecorder, net: nn.Module) -> Optional[List[ModuleRecorder]]:
    """The module recorders that say where ``recorder`` reads ``net``, or
    ``None`` for a recorder of unknown kind."""
    if isinstance(recorder, ModuleRecorder):
        return [recorder]
    if isinstance(recorder, StageFeatures):
        return [p.recorder().attach(net, recorder.owner) for p in recorder.positions()]
    return None


class TeacherFastPath:
    """What the fast path changed in one teacher, and how to undo it.

    Attributes:
        name: The teacher's name.
        pairs: The folded (conv, BN) pairs.
        compiled: Paths of the compiled parts.
        frozen: Paths of the parts run as frozen inference graphs.
        build_seconds: Time of the compiled or frozen parts' first calls.
    """

    def __init__(self, net: nn.Module, name: str = 'teacher'):
        self.net = net
        self.name = name
        self.pairs: List[FoldPair] = []
        self.compiled: List[str] = []
        self.frozen: List[str] = []
        #: The recorded modules (``None``: a record of unknown kind), and whether
        #: the teacher's BNs use their stored statistics; set by :meth:`apply`.
        self.recorded: Optional[List[nn.Module]] = None
        self.eval_norm = True
        self.build_seconds = 0.0
        self._build_reported = False

    @property
    def channels_last(self) -> bool:
        """Whether the teacher runs in channels-last format (the net's own mark,
        :func:`~mmkd.distillers.memory_format.is_channels_last`)."""
        return is_channels_last(self.net)

    def __deepcopy__(self, memo) -> 'TeacherFastPath':  # for a copy of the net
        fast = TeacherFastPath(memo.get(id(self.net), self.net), self.name)
        fast.pairs = list(self.pairs)
        fast.compiled, fast.frozen = list(self.compiled), list(self.frozen)
        return fast

    @classmethod
    def apply(cls, net: nn.Module, records: Mapping[str, BaseRecorder], settings: dict,
              forward: Optional[Callable[[], Any]] = None, fold: bool = True,
              name: str = 'teacher') -> 'TeacherFastPath':
        """Accelerate ``net`` (in place) as ``settings`` say.

        Args:
            net: The frozen teacher, in eval mode.
            records: Its recorders by name.
            settings: See :func:`fast_path_settings`.
            forward: A full forward of ``net`` on a sample input (needed to
                fold; without it nothing is folded).
            fold: Whether folding is allowed (not for ``batch_stats`` teachers).
            name: The teacher's name, for messages.
        """
        fast = cls(net, name)
        spots: Optional[List[ModuleRecorder]] = []
        for recorder in records.values():
            found = record_spots(recorder, net)
            spots = None if found is None or spots is None else spots + found
        if spots is None:
            warnings.warn(f'teacher {name!r}: a record of unknown kind; its fast path only '
                          'uses channels-last.')
        if settings['fold_bn'] and fold and forward is not None and spots is not None:
            fast.pairs = fold_pairs(net, find_foldable_pairs(net, forward, spots))
        if settings['channels_last'] and suits_channels_last(net):
            to_channels_last(net)
        net.register_forward_pre_hook(_BeforeTeacherForward(fast), with_kwargs=True)
        net.register_load_state_dict_post_hook(_RefoldAfterLoad())
        # A record of unknown kind may read inside any part: then no part is replaced.
        fast.recorded = None if spots is None else [s.module for s in spots]
        fast.eval_norm = fold
        fast.accelerate_parts(settings)
        return fast

    def accelerate_parts(self, settings: dict) -> None:
        """Compile the record-free parts (``compile``), or else run them as
        frozen inference graphs (``freeze``, not for a teacher on batch
        statistics); both lazily, from their first call."""
        recorded = self.recorded
        if recorded is None:
            return
        if settings['compile']:
            options = {} if settings['compile'] is True else dict(settings['compile'])
            self.compiled = record_free_parts(self.net, recorded)
            replace_parts(self.net, self.compiled, 'compile', options, self)
        elif settings['freeze'] and self.eval_norm and \
                hasattr(torch.jit, 'optimize_for_inference'):
            least = math.ceil(FROZEN_MIN_SHARE * _convolutions(self.net)) or 1
            self.frozen = record_free_parts(self.net, recorded, least)
            replace_parts(self.net, self.frozen, 'freeze', {}, self)

    def report_build_time(self) -> None:
        """Log the time of the compiled or frozen parts' first calls, once they
        have all run once."""
        parts = self.compiled or self.frozen
        if not parts or self._build_reported or self.build_seconds == 0:
            return
        if not all(forward.ready for forward in part_forwards(self.net)):
            return
        self._build_reported = True
        what = 'torch.compile' if self.compiled else 'the frozen inference graphs'
        print_log(f'teacher {self.name!r}: {what} of {parts} took {self.build_seconds:.1f} s '
                  '(their first call, checks included).',
                  logger=MMLogger.get_current_instance())

    def remove(self) -> None:
        """Undo everything: the teacher computes as it was built."""
        remove_fast_path(self.net)
        self.pairs, self.compiled, self.frozen = [], [], []

    def describe(self) -> str:
        """What the fast path does, in words."""
        parts = []
        if self.pairs:
            parts.append(f'{len(self.pairs)} BN folded into their convs')
        if self.channels_last:
            parts.append('channels-last')
        if self.compiled:
            parts.append(f'compiled {self.compiled}')
        if self.frozen:
            parts.append(f'frozen inference graphs of {self.frozen}')
        return ', '.join(parts) or 'nothing'


def remove_fast_path(net: nn.Module) -> nn.Module:
    """Undo any fast path on ``net`` (or on a copy of an accelerated net) in place."""
    restore_parts(net)
    unfold(net)
    for hooks in (net._forward_pre_hooks, net._load_state_dict_post_hooks):
        for key in [k for k, h in hooks.items()
                    if isinstance(h, (_BeforeTeacherForward, _RefoldAfterLoad))]:
            del hooks[key]
            net._forward_pre_hooks_with_kwargs.pop(key, None)
    to_standard_format(net)
    return net


def plain_copy(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` without any fast path (the teacher as built)."""
    return remove_fast_path(copy.deepcopy(net))


# ---------------------------------------------------------------------------- distillers
def snapshot(value):
    """A detached copy of a record's value (tensors in lists and mappings too)."""
    return map_tensors(lambda tensor: tensor.detach().clone(), value)


def difference(plain, fast) -> Optional[str]:
    """Why ``fast`` is not ``plain`` up to round-off (``None`` if it is)."""
    plain_items, fast_items = list(_tensors(plain)), list(_tensors(fast))
    if len(plain_items) != len(fast_items):
        return f'{len(fast_items)} tensors instead of {len(plain_items)}'
    for a, b in zip(plain_items, fast_items):
        if a.shape != b.shape:
            return f'shape {tuple(b.shape)} instead of {tuple(a.shape)}'
        if not a.is_floating_point():
            if not torch.equal(a, b):
                return 'different values'
            continue
        finite = torch.isfinite(a)
        if not torch.equal(finite, torch.isfinite(b)):
            return 'non-finite values in other places'
        a, b = a[finite], b[finite]
        scale = float(a.abs().max()) if a.numel() else 0.0
        error = float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
        if error > CHECK_RTOL * max(scale, 1e-6):
            return f'max abs difference {error:.3g} (max abs value {scale:.3g})'
    return None


def first_difference(before: Mapping[str, Any], after: Mapping[str, Any]
                     ) -> Optional[tuple]:
    """The first ``(name, why)`` where ``after[name]`` is not ``before[name]``
    up to round-off (:func:`difference`), or ``None`` where all agree."""
    return next(((name, reason) for name, value in before.items()
                 for reason in [difference(value, after.get(name))] if reason is not None),
                None)


def teacher_records(distiller) -> Dict[str, Dict[str, Any]]:
    """Copies of every teacher record of the last forward, by teacher and name."""
    found = {}
    for name, teacher in distiller.frozen_teachers.items():
        found[name] = {}
        for record, recorder in teacher.records.recorders.items():
            try:
                found[name][record] = snapshot(recorder.get())
            except RecordNotFoundError:
                continue
    return found


def first_calls(nets: Mapping[str, nn.Module], run: Callable[[], Any]) -> Dict[str, tuple]:
    """The arguments each net is first called with while ``run`` runs."""
    seen: Dict[str, tuple] = {}
    handles = []
    for name, net in nets.items():

        def keep(_module, args, kwargs, name=name):
            seen.setdefault(name, (args, dict(kwargs)))

        handles.append(net.register_forward_pre_hook(keep, with_kwargs=True))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return seen


def accelerate_teachers(distiller, inputs: torch.Tensor, samples) -> None:
    """Apply each running teacher's fast path (after the dry run: records
    located, copies decided), check the records against the plain teacher's
    on the dry-run input, and keep the fast path only where they agree.

    Called by :meth:`Distiller._finish_setup` under ``no_grad``, in eval
    mode; the distiller's ``teacher_fast_path`` settings apply to every
    teacher. The teachers' forwards here are those of the dry run.
    """
    settings = distiller.teacher_fast_path
    if not any(settings.values()):
        return
    teachers = [t for t in distiller.frozen_teachers.values() if t.runs]
    if not teachers:
        return
    before = teacher_records(distiller)
    calls = first_calls({t.name: t.net for t in teachers},
                        lambda: distiller.run_teachers(inputs, samples))
    # Everything asked first; where records then differ, the same without channels-last.
    # Compiled and frozen parts come after the check (they check their own outputs).
    attempts = [dict(settings, compile=False, freeze=False)]
    if settings['channels_last']:
        attempts.append(dict(settings, channels_last=False, compile=False, freeze=False))
    pending = list(teachers)
    for attempt, chosen in enumerate(attempts):
        for teacher in pending:
            teacher.fast_path = _apply_to(teacher, chosen, calls.get(teacher.name))
        distiller._forward_nets(inputs, samples, 'tensor', run_teachers=True)
        after = teacher_records(distiller)
        failed = []
        for teacher in pending:
            why = first_difference(before[teacher.name], after[teacher.name])
            if teacher.fast_path is None or why is None:
                continue
            last = attempt == len(attempts) - 1
            warnings.warn(f'teacher {teacher.name!r}: with its fast path '
                          f'({teacher.fast_path.describe()}), record {why[0]!r} differs from '
                          f"the plain teacher's ({why[1]}); "
                          f'{"it runs as built" if last else "trying without channels-last"}.')
            teacher.fast_path.remove()
            teacher.fast_path = None
            failed.append(teacher)
        pending = failed
        if not pending:
            break
    logger = MMLogger.get_current_instance()
    for teacher in teachers:
        if teacher.fast_path is None:
            continue
        if not (teacher.fast_path.pairs or teacher.fast_path.channels_last
                or settings['compile']):
            teacher.fast_path.remove()  # nothing to fold, no convolutions
            teacher.fast_path = None
            continue
        teacher.fast_path.accelerate_parts(settings)
        print_log(f'teacher {teacher.name!r} fast path: {teacher.fast_path.describe()}.',
                  logger=logger)


def _apply_to(teacher, settings: dict, call: Optional[tuple]) -> Optional[TeacherFastPath]:
    """One teacher's fast path; ``None`` (with a warning) where it cannot be probed."""
    forward = None if call is None else (
        lambda net=teacher.net, call=call: net(*call[0], **call[1]))
    try:
        return TeacherFastPath.apply(teacher.net, teacher.records.recorders, settings, forward,
                                     fold=teacher.norm == 'eval', name=teacher.name)
    except Exception as err:  # noqa: BLE001  (a teacher that cannot be probed runs as built)
        remove_fast_path(teacher.net)
        warnings.warn(f'teacher {teacher.name!r} keeps no fast path: {err!r}')
        return None
