"""Stage features of a backbone, before or after their ReLU, found without paths."""
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmkd.registry import MODELS
from .base import BaseRecorder, RecordNotFoundError, RecorderPathError, resolve_module

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
    if hasattr(backbone, 'num_stages') and hasattr(backbone, 'layer1'):
        return [f'layer{i + 1}' for i in range(backbone.num_stages)
                if hasattr(backbone, f'layer{i + 1}')]
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


class _Plan:
    """Where a stage's pre-ReLU value is, as learned on the first forward."""

    def __init__(self, after_stage: bool, relu_index: int, norm_path: Optional[str]):
        self.after_stage = after_stage      # pre-activation nets: the next ReLU's input
        self.relu_index = relu_index        # else: this rectifier call inside the stage
        self.norm_path = norm_path


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

    The first forward finds out which case holds (the stage output is
    compared with the rectified candidate) and which BatchNorm produced the
    feature: the last one of the stage's main path (shortcuts excluded) for
    post-activation stages, the one whose output the rectifier takes for
    pre-activation ones. :meth:`norm_layers` returns them for the margin of
    :class:`~mmkd.connectors.MarginReLU`. Only the kept rectifier call is
    copied, and only when the rectifier works in place.

    With ``pre_relu=False`` each value is the stage's output.

    Args:
        stages: Stage module names relative to ``backbone`` (or full paths);
            ``None`` takes every stage of a known backbone (mmpretrain,
            mmdet and mmseg ResNets, mmkd's backbones).
        pre_relu: Record pre-ReLU features instead of stage outputs.
        backbone: Path of the backbone in the model (``''`` for a bare
            backbone).

    Example:
        >>> rec = StageFeatures().attach(resnet_classifier)
        >>> with rec:
        ...     resnet_classifier(x, mode='tensor')
        >>> [f.shape for f in rec.get()], rec.norm_layers()
    """

    def __init__(self, stages: Optional[Sequence[str]] = None, pre_relu: bool = True,
                 backbone: str = 'backbone'):
        super().__init__(source=backbone, call_index=0, clone=False)
        self.stages = None if stages is None else list(stages)
        self.pre_relu = pre_relu
        self.backbone = backbone
        self.stage_paths: List[str] = []
        self._plans: Optional[List[_Plan]] = None
        self._model: Optional[nn.Module] = None
        self._handles: list = []
        self._reset_state()

    # ----------------------------------------------------------------- binding
    def attach(self, model: nn.Module, owner: str = 'model') -> 'StageFeatures':
        self.owner = owner
        self._model = model
        root = resolve_module(model, self.backbone, owner) if self.backbone else model
        self.module = root
        names = self.stages if self.stages is not None else default_stage_names(root)
        prefix = f'{self.backbone}.' if self.backbone else ''
        modules = dict(model.named_modules())
        self.stage_paths = []
        for name in names:
            path = next((p for p in (prefix + name, name) if p in modules), None)
            if path is None:
                resolve_module(model, prefix + name, owner)  # raises, naming the nearest paths
            self.stage_paths.append(path)
        self._plans = None
        return self

    def _register(self, module: nn.Module):
        raise NotImplementedError  # hooks are installed by __enter__

    def __enter__(self) -> 'StageFeatures':
        if self._model is None:
            raise RuntimeError(f'{self.describe()} is not attached to a model; call attach().')
        self.reset()
        modules = dict(self._model.named_modules())
        for i, path in enumerate(self.stage_paths):
            stage = modules[path]
            self._handles.append(stage.register_forward_pre_hook(
                lambda _m, _a, i=i: self._stage_begins(i)))
            self._handles.append(stage.register_forward_hook(
                lambda _m, _a, out, i=i: self._stage_ends(i, out)))
        if self.pre_relu:
            for path, m in modules.items():
                if isinstance(m, RECTIFIERS):
                    self._handles.append(m.register_forward_pre_hook(
                        lambda mod, args, path=path: self._rectifier_runs(mod, args[0])))
                elif self._plans is None and isinstance(m, _BatchNorm):
                    self._handles.append(m.register_forward_hook(
                        lambda _m, _a, out, path=path: self._norm_runs(path, out)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self.complete:
            self._finish_calibration()

    # ----------------------------------------------------------------- state
    def _reset_state(self) -> None:
        n = len(self.stage_paths) if hasattr(self, 'stage_paths') else 0
        self._stage_values: List[Optional[torch.Tensor]] = [None] * n
        self._current: Optional[int] = None
        self._rectifier_calls = 0
        self._waiting: List[int] = []
        # first-forward bookkeeping
        self._candidates: List[tuple] = []
        self._norms_in_stage: List[str] = []
        self._last_norm: Optional[tuple] = None
        self._found: Dict[int, _Plan] = {}

    def reset(self) -> None:
        self._reset_state()

    @property
    def calibrating(self) -> bool:
        return self._plans is None

    # ----------------------------------------------------------------- hooks
    def _stage_begins(self, i: int) -> None:
        self._current = i
        self._rectifier_calls = 0
        self._candidates = []
        self._norms_in_stage = []

    def _norm_runs(self, path: str, out: torch.Tensor) -> None:
        self._last_norm = (path, out)
        if self._current is not None:
            self._norms_in_stage.append(path)

    def _keep(self, i: int, value: torch.Tensor) -> None:
        self._stage_values[i] = value
        if self._on_capture is not None:
            self._on_capture(self)

    def _rectifier_runs(self, module: nn.Module, x: torch.Tensor) -> None:
        copy = getattr(module, 'inplace', False)
        for i in self._waiting:  # pre-activation stages waiting for the next rectifier
            norm = self._last_norm
            if self.calibrating:
                self._found[i] = _Plan(True, -1, norm[0] if norm and norm[1] is x else None)
            self._keep(i, x.clone() if copy else x)
        self._waiting = []
        i = self._current
        if i is None:
            return
        if self.calibrating:
            self._candidates.append((module, x.clone(), list(self._norms_in_stage)))
        elif not self._plans[i].after_stage and self._rectifier_calls == self._plans[i].relu_index:
            self._keep(i, x.clone() if copy else x)
        self._rectifier_calls += 1

    def _stage_ends(self, i: int, out) -> None:
        self._current = None
        if not self.pre_relu:
            self._keep(i, out)
            return
        if not isinstance(out, torch.Tensor):
            raise RecordNotFoundError(
                f'{self.describe()}: stage {self.stage_paths[i]!r} returns a '
                f'{type(out).__name__}, not a tensor; name its blocks as stages instead.')
        if not self.calibrating:
            if self._plans[i].after_stage:
                self._waiting.append(i)
            return
        if self._candidates:
            module, value, norms = self._candidates[-1]
            rectified = _rectify(module, value)
            if rectified.shape == out.shape and torch.equal(rectified, out):
                norm = next((p for p in reversed(norms)
                             if not any(s in p.split('.') for s in SHORTCUT_NAMES)), None)
                self._found[i] = _Plan(False, len(self._candidates) - 1, norm)
                self._keep(i, value)
                return
        self._waiting.append(i)

    # ----------------------------------------------------------------- results
    def _finish_calibration(self) -> None:
        if self.calibrating and len(self._found) == len(self.stage_paths):
            self._plans = [self._found[i] for i in range(len(self.stage_paths))]

    @property
    def num_calls(self) -> int:
        return int(all(v is not None for v in self._stage_values))

    @property
    def complete(self) -> bool:
        return all(v is not None for v in self._stage_values)

    def overwritten(self) -> bool:
        return False  # the kept tensors are copies wherever a rectifier works in place

    def get(self) -> List[torch.Tensor]:
        """The features of the last forward, one per stage."""
        missing = [p for p, v in zip(self.stage_paths, self._stage_values) if v is None]
        if missing:
            hint = (' No rectifier (nn.ReLU/ReLU6) ran after it: for a net without one, record'
                    ' its stage outputs with pre_relu=False.') if self.pre_relu else ''
            raise RecordNotFoundError(f'{self.describe()}: no value for stage(s) {missing} in '
                                      f'the last forward.{hint}')
        self._finish_calibration()
        return list(self._stage_values)

    def norm_paths(self) -> List[Optional[str]]:
        """Path of the BatchNorm behind each stage's pre-ReLU feature (None if none)."""
        if self._plans is None:
            raise RuntimeError(f'{self.describe()}: run one forward first (the distiller\'s dry '
                               'run does) so that the positions are known.')
        return [plan.norm_path for plan in self._plans]

    def norm_layers(self) -> List[Optional[_BatchNorm]]:
        """The BatchNorm modules of :meth:`norm_paths`."""
        modules = dict(self._model.named_modules())
        return [None if p is None else modules[p] for p in self.norm_paths()]

    def describe(self) -> str:
        kind = 'pre-ReLU' if self.pre_relu else 'outputs'
        return f'StageFeatures({kind}, stages={self.stage_paths}) on {self.owner}'
