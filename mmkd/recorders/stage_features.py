"""Stage features of a backbone, before or after their ReLU, found without paths."""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmkd.registry import MODELS

from .base import BaseRecorder, CaptureCallback, ModuleRecorder, RecorderPathError, resolve_module
from .module_recorders import ModuleInputs, ModuleOutputs

#: Activations whose input is the "pre-ReLU" feature.
RECTIFIERS = (nn.ReLU, nn.ReLU6)
#: Path segments of residual shortcuts: their BN never feeds the block's ReLU alone.
SHORTCUT_NAMES = ('downsample', 'shortcut', 'skip')


def default_stage_names(backbone: nn.Module) -> List[str]:
    """Names of the stages of a known backbone, relative to it.

    mmpretrain / mmdet / mmseg ResNets list them in ``res_layers``; mmkd's
    backbones name them ``layer1 .. layerN``.
    """
    if isinstance(getattr(backbone, 'res_layers', None), (list, tuple)):
        return list(backbone.res_layers)
    names = [n for n, _ in backbone.named_children() if n.startswith('layer')]
    if names:
        return names
    raise RecorderPathError(
        f'cannot tell the stages of {type(backbone).__name__}; name them, e.g. '
        f'StageFeatures(stages=["layer1", "layer2"]), or record by hand with ModuleInputs '
        '(see configs/ofd/README.md).')


def _rectify(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``module`` (one of :data:`RECTIFIERS`) returns for ``x``, without calling it."""
    return x.clamp(0, 6) if isinstance(module, nn.ReLU6) else x.clamp(min=0)


@dataclass(frozen=True)
class StagePosition:
    """Where one stage's feature is recorded, as found by :class:`StageFeatures`.

    Args:
        path: Module recorded: the rectifier whose input is the pre-ReLU
            feature, or the stage itself for stage outputs.
        call_index: Which call of that module in a forward.
        is_input: Record the module's input (pre-ReLU) or its output.
        clone: Copy the value (the rectifier works in place).
        norm: Path of the BatchNorm that produced the feature, if any.
    """
    path: str
    call_index: int = 0
    is_input: bool = False
    clone: Optional[bool] = None
    norm: Optional[str] = None

    def recorder(self) -> ModuleRecorder:
        """An ordinary module recorder at this position."""
        cls = ModuleInputs if self.is_input else ModuleOutputs
        return cls(self.path, call_index=self.call_index, clone=self.clone)


class _PreReLUProbe:
    """Hooks of one forward that find each stage's pre-ReLU position.

    A post-activation stage (ResNet: ``relu(bn2(conv2(x)) + identity)``)
    ends with a rectifier call whose result is the stage output: its input
    is the feature, and the BN behind it is the last one of the stage's main
    path (shortcuts excluded). A pre-activation stage (WRN: the output is
    not rectified) hands its output to the first rectifier that runs after
    it; the BN is the one whose output that rectifier takes.
    """

    def __init__(self, model: nn.Module, stage_paths: Sequence[str]):
        self.model = model
        self.stage_paths = list(stage_paths)
        self.found: Dict[int, StagePosition] = {}
        self._calls: Dict[str, int] = {}
        self._current: Optional[int] = None
        self._candidates: List[Tuple[str, nn.Module, torch.Tensor, int, List[str]]] = []
        self._norms_in_stage: List[str] = []
        self._last_norm: Optional[Tuple[str, torch.Tensor]] = None
        self._waiting: List[int] = []

    @contextmanager
    def hooks(self) -> Iterator['_PreReLUProbe']:
        modules = dict(self.model.named_modules())
        handles = []
        for i, path in enumerate(self.stage_paths):
            stage = modules[path]
            handles.append(stage.register_forward_pre_hook(
                lambda _m, _a, i=i: self._stage_begins(i)))
            handles.append(stage.register_forward_hook(
                lambda _m, _a, out, i=i: self._stage_ends(i, out)))
        for path, m in modules.items():
            if isinstance(m, RECTIFIERS):
                handles.append(m.register_forward_pre_hook(
                    lambda mod, args, path=path: self._rectifier_runs(path, mod, args[0])))
            elif isinstance(m, _BatchNorm):
                handles.append(m.register_forward_hook(
                    lambda _m, _a, out, path=path: self._norm_runs(path, out)))
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _stage_begins(self, i: int) -> None:
        self._current = i
        self._candidates = []
        self._norms_in_stage = []

    def _norm_runs(self, path: str, out: torch.Tensor) -> None:
        self._last_norm = (path, out)
        if self._current is not None:
            self._norms_in_stage.append(path)

    def _rectifier_runs(self, path: str, module: nn.Module, x: torch.Tensor) -> None:
        call = self._calls.get(path, 0)
        self._calls[path] = call + 1
        inplace = bool(getattr(module, 'inplace', False))
        for i in self._waiting:  # pre-activation stages waiting for the next rectifier
            norm = self._last_norm
            self.found[i] = StagePosition(path, call, True, inplace,
                                          norm[0] if norm and norm[1] is x else None)
        self._waiting = []
        if self._current is not None:
            self._candidates.append((path, module, x.clone(), call, list(self._norms_in_stage)))

    def _stage_ends(self, i: int, out) -> None:
        self._current = None
        if not isinstance(out, torch.Tensor):
            raise RecorderPathError(
                f'stage {self.stage_paths[i]!r} returns a {type(out).__name__}, not a tensor; '
                'name its blocks as stages instead.')
        if self._candidates:
            path, module, value, call, norms = self._candidates[-1]
            rectified = _rectify(module, value)
            if rectified.shape == out.shape and torch.equal(rectified, out):
                norm = next((p for p in reversed(norms)
                             if not any(s in p.split('.') for s in SHORTCUT_NAMES)), None)
                inplace = bool(getattr(module, 'inplace', False))
                self.found[i] = StagePosition(path, call, True, inplace, norm)
                return
        self._waiting.append(i)


@MODELS.register_module()
class StageFeatures(BaseRecorder):
    """Records one feature per backbone stage: a list, shallow to deep.

    With ``pre_relu=True`` (OFD, ReviewKD teachers) each value is the tensor
    that the stage's output ReLU rectifies, with its negative responses:

    * a post-activation stage (ResNet: ``relu(bn2(conv2(x)) + identity)``)
      gives the input of its last rectifier call;
    * a pre-activation stage (WRN: the output is not rectified) gives the
      input of the first rectifier that runs after it, i.e. the next
      block's ``relu(bn1(x))`` or the final ``relu(bn(x))``.

    The positions are found once, by one forward inside :meth:`probe` (the
    distiller's build does it), and then recorded by ordinary
    :class:`ModuleInputs` recorders (rectifier path + call index), copied
    only where the rectifier works in place. :meth:`positions` lists them,
    with the BatchNorm behind each feature (the last one of the stage's main
    path for post-activation stages, the one whose output the rectifier
    takes for pre-activation ones): :meth:`norm_layers` hands those to
    :class:`~mmkd.connectors.MarginReLU`.

    With ``pre_relu=False`` each value is the stage's output
    (:class:`ModuleOutputs` of the stage); nothing needs to be found.

    Args:
        stages: Stage module names relative to ``backbone`` (or full paths);
            ``None`` takes every stage of a known backbone (mmpretrain,
            mmdet and mmseg ResNets, mmkd's backbones).
        pre_relu: Record pre-ReLU features instead of stage outputs.
        backbone: Path of the backbone in the model (``''`` for a bare
            backbone).

    Example:
        >>> rec = StageFeatures().attach(resnet_classifier)
        >>> with rec.probe():
        ...     resnet_classifier(x, mode='tensor')   # once: find the positions
        >>> with rec:
        ...     resnet_classifier(x, mode='tensor')
        >>> [f.shape for f in rec.get()], rec.norm_paths()
    """

    def __init__(self, stages: Optional[Sequence[str]] = None, pre_relu: bool = True,
                 backbone: str = 'backbone'):
        self.source = backbone
        self.stages = None if stages is None else list(stages)
        self.pre_relu = pre_relu
        self.backbone = backbone
        self.stage_paths: List[str] = []
        self._model: Optional[nn.Module] = None
        self._positions: Optional[List[StagePosition]] = None
        self._items: List[ModuleRecorder] = []

    # ----------------------------------------------------------------- binding
    def attach(self, model: nn.Module, owner: str = 'model') -> 'StageFeatures':
        self.owner = owner
        self._model = model
        root = resolve_module(model, self.backbone, owner) if self.backbone else model
        names = self.stages if self.stages is not None else default_stage_names(root)
        prefix = f'{self.backbone}.' if self.backbone else ''
        modules = dict(model.named_modules())
        self.stage_paths = []
        for name in names:
            path = next((p for p in (prefix + name, name) if p in modules), None)
            if path is None:
                resolve_module(model, prefix + name, owner)  # raises, naming the nearest paths
            self.stage_paths.append(path)
        self._set_positions(None if self.pre_relu else
                            [StagePosition(p) for p in self.stage_paths])
        return self

    def _set_positions(self, positions: Optional[List[StagePosition]]) -> None:
        self._positions = positions
        self._items = [] if positions is None else [
            p.recorder().attach(self._model, self.owner) for p in positions]

    @property
    def located(self) -> bool:
        return self._positions is not None

    @contextmanager
    def probe(self) -> Iterator[None]:
        """Find the pre-ReLU positions during the forward run inside the block."""
        if self._model is None:
            raise RuntimeError(f'{self.describe()} is not attached to a model; call attach().')
        if self.located:
            yield
            return
        finder = _PreReLUProbe(self._model, self.stage_paths)
        with finder.hooks():
            yield
        missing = [p for i, p in enumerate(self.stage_paths) if i not in finder.found]
        if missing:
            raise RecorderPathError(
                f'{self.describe()}: no rectifier (nn.ReLU/ReLU6) takes the feature of stage(s) '
                f'{missing}; for a net without one, record its stage outputs with '
                'pre_relu=False.')
        self._set_positions([finder.found[i] for i in range(len(self.stage_paths))])

    def _check_located(self) -> None:
        if not self.located:
            raise RuntimeError(f'{self.describe()}: the positions are not known yet; run one '
                               'forward inside probe() first (the distiller\'s build does).')

    # ----------------------------------------------------------------- recording
    def start(self, on_capture: Optional[CaptureCallback] = None) -> 'StageFeatures':
        self._check_located()
        for item in self._items:
            item.start(on_capture)
        return self

    def stop(self) -> None:
        for item in self._items:
            item.stop()

    def reset(self) -> None:
        for item in self._items:
            item.reset()

    @property
    def can_stop_early(self) -> bool:
        return all(item.can_stop_early for item in self._items)

    @property
    def complete(self) -> bool:
        return bool(self._items) and all(item.complete for item in self._items)

    def decide_clone(self) -> bool:
        return any([item.decide_clone() for item in self._items])

    def get(self) -> List[torch.Tensor]:
        """The features of the last forward, one per stage."""
        self._check_located()
        return [item.get() for item in self._items]

    # ----------------------------------------------------------------- facts
    def positions(self) -> List[StagePosition]:
        """Where each stage's feature is recorded."""
        self._check_located()
        return list(self._positions)

    def norm_paths(self) -> List[Optional[str]]:
        """Path of the BatchNorm behind each stage's pre-ReLU feature (None if none)."""
        return [p.norm for p in self.positions()]

    def norm_layers(self) -> Optional[List[Optional[nn.Module]]]:
        """The BatchNorm modules of :meth:`norm_paths` (``None`` for stage outputs)."""
        if not self.pre_relu:
            return None
        modules = dict(self._model.named_modules())
        return [None if p is None else modules[p] for p in self.norm_paths()]

    def describe(self) -> str:
        kind = 'pre-ReLU' if self.pre_relu else 'outputs'
        return f'StageFeatures({kind}, stages={self.stage_paths}) on {self.owner}'
