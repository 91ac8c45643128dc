"""What every distiller shares: the student, records, connectors, losses."""
import copy
import inspect
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModel
from torch import nn

from mmkd.connectors import ConnectorConfigError, infer_connector_config
from mmkd.losses import ShapeMismatchError
from mmkd.recorders import RecorderGroup
from mmkd.registry import MODELS
from .builder import build_model_from_cfg, model_cfg_from

ForwardResults = Union[Dict[str, torch.Tensor], list, torch.Tensor, tuple]


class DistillerConfigError(ValueError):
    """The distillation part of a config is inconsistent."""


def _shape(value) -> str:
    if isinstance(value, list):
        return '[' + ', '.join(_shape(v) for v in value) + ']'
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


#: A loss ``forward`` argument of this name receives the batch's data samples.
SAMPLES_ARG = 'data_samples'


def takes_data_samples(loss: nn.Module) -> bool:
    """Whether ``loss.forward`` asks for the batch's data samples."""
    return SAMPLES_ARG in inspect.signature(loss.forward).parameters


def scale_losses(losses: Dict[str, object], scale: float) -> Dict[str, object]:
    """Multiply the entries of a loss dict whose key contains ``'loss'``.

    Entries may be tensors or lists of tensors (mmdet's per-level losses);
    other entries (e.g. accuracies) are kept. A scale of 0 also detaches,
    so nothing is backpropagated through the student's head for them.

    Args:
        losses: A model's loss dict.
        scale: The factor.

    Returns:
        A new dict.

    Example:
        >>> scale_losses({'loss': torch.tensor(2.), 'acc': torch.tensor(.5)}, 0.5)
        {'loss': tensor(1.), 'acc': tensor(0.5000)}
    """
    def apply(value):
        if isinstance(value, torch.Tensor):
            return value.detach() * 0 if scale == 0 else value * scale
        if isinstance(value, (list, tuple)):
            return type(value)(apply(v) for v in value)
        return value

    return {k: apply(v) if 'loss' in k else v for k, v in losses.items()}


def first_conv_in_channels(model: nn.Module, default: int = 3) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return default


class BaseDistiller(BaseModel):
    """Base of the distillers: builds the student and wires the losses.

    Records are named values captured from a net (see :mod:`mmkd.recorders`).
    A *reference* names what a loss argument receives:

    * ``'name'`` - a connector's output if a connector has that name, else
      the record ``name`` of the net the argument is named after
      (``student=`` / ``teacher=``);
    * ``'student.name'`` / ``'teacher.name'`` - that net's record;
    * a list of references (e.g. ``teacher=['t1.logits', 't2.logits']``) -
      the loss argument receives the list of their values, in that order.

    Connectors: ``name=dict(type=..., input=<reference>, like=<reference>)``.
    ``in_channels``/``out_channels`` left out of the config are taken from
    the ``input`` / ``like`` records in a dry run at build time, where every
    loss is also tried once so that wrong shapes fail before training.

    Args:
        student: The student's model dict, or ``dict(cfg_path=...)``.
        recorders: Recorders attached to the student and every teacher.
        student_recorders: Recorders of the student only.
        connectors: Connector configs by name.
        losses: Loss configs by name; a name must contain ``'loss'``
            (MMEngine sums those). Keys that name arguments of the loss's
            ``forward`` are references; the others go to its ``__init__``.
            A ``forward`` with a ``data_samples`` argument receives the
            batch's data samples (``None`` in the dry run).
        dry_run_shape: (C, H, W) of the dry-run input; channels default to
            the student's first conv, size to 64 x 64.
        data_preprocessor: Overrides the student's data preprocessor (the
            runner passes the config's top-level one). The distiller and
            the student share one instance.
        init_cfg: MMEngine init config.
    """

    def __init__(self, student: dict, recorders: Optional[dict] = None,
                 student_recorders: Optional[dict] = None, connectors: Optional[dict] = None,
                 losses: Optional[dict] = None, dry_run_shape: Optional[Sequence[int]] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        student_cfg, scope = model_cfg_from(student, 'student')
        if data_preprocessor is not None:
            merged = copy.deepcopy(dict(student_cfg.get('data_preprocessor') or {}))
            merged.update(data_preprocessor)
            student_cfg['data_preprocessor'] = merged
        self.student = build_model_from_cfg(student_cfg, scope)
        self.student_scope = scope
        self.data_preprocessor = self.student.data_preprocessor
        self._shared_recorders = dict(recorders or {})
        self.student_records = RecorderGroup(
            self.student, {**self._shared_recorders, **dict(student_recorders or {})}, 'student')
        self._connector_cfgs = dict(connectors or {})
        self._loss_cfgs = dict(losses or {})
        self._dry_run_shape = dry_run_shape
        self.loss_scales: Dict[str, float] = {}
        # Factor on the student's own (task) losses; 0 switches them off, as
        # in stage 1 of two-stage training (mmkd.engine.StagedTrainLoop).
        self.task_loss_scale: float = 1.0
        self.connectors = nn.ModuleDict()
        self.distill_losses = nn.ModuleDict()

    # ------------------------------------------------------------------ teachers
    def teacher_groups(self) -> Dict[str, RecorderGroup]:
        """Recorder group of every teacher, by the prefix references use."""
        return {}

    def run_teachers(self, inputs: torch.Tensor, data_samples=None) -> None:
        """Run each teacher (no grad) as far as its records need."""

    # ------------------------------------------------------------------ wiring
    def _setup_distillation(self) -> None:
        """Dry run, connectors, loss wiring and checks; call once the
        teachers exist."""
        self._check_names()
        values = self._dry_run()
        self._connector_inputs: Dict[str, Tuple[str, str]] = {}
        for name, cfg in self._connector_cfgs.items():
            self.connectors[name] = self._build_connector(name, dict(cfg), values)
        self.loss_inputs: Dict[str, Dict[str, Tuple[str, str]]] = {}
        for name, cfg in self._loss_cfgs.items():
            self.distill_losses[name], self.loss_inputs[name] = self._build_loss(name, dict(cfg))
        self._check_losses_on_dry_run(values)

    def _check_names(self) -> None:
        groups = self.teacher_groups()
        for name in self._connector_cfgs:
            if name in self.student_records or any(name in g for g in groups.values()):
                raise DistillerConfigError(
                    f'connector {name!r} has the name of a record; give it another name.')
        for name in self._loss_cfgs:
            if 'loss' not in name:
                raise DistillerConfigError(
                    f'distillation loss {name!r}: its name must contain "loss" (e.g. '
                    f'"loss_{name}") so that MMEngine adds it to the total loss.')

    def _dry_input(self) -> torch.Tensor:
        if self._dry_run_shape is not None:
            shape = tuple(self._dry_run_shape)
        else:
            shape = (first_conv_in_channels(self.student), 64, 64)
        return torch.randn(2, *shape)

    @torch.no_grad()
    def _dry_run(self) -> Dict[str, object]:
        """Run every net once in eval mode; decide clones; keep the values."""
        x = self._dry_input()
        was_training = self.student.training
        self.student.eval()

        def record(group: RecorderGroup, forward, stop: bool) -> Dict[str, object]:
            # Pass 1 keeps references and sees which ones later ops overwrite;
            # pass 2 records with the clones that pass 1 asked for.
            for _ in range(2):
                with group.recording(stop_when_complete=stop):
                    forward()
                group.enable_clone_where_overwritten()
            return group.values()

        try:
            values = {f'student.{k}': v for k, v in record(
                self.student_records, lambda: self.run_student_for_dry_run(x), False).items()}
            for prefix, group in self.teacher_groups().items():
                values.update({f'{prefix}.{k}': v for k, v in record(
                    group, lambda: self.run_teachers_for_dry_run(prefix, x), True).items()})
        finally:
            self.student.train(was_training)
        return values

    def run_student_for_dry_run(self, x: torch.Tensor) -> None:
        """The student's forward in the dry run (``tensor`` mode)."""
        self.student(x, mode='tensor')

    def run_teachers_for_dry_run(self, prefix: str, x: torch.Tensor) -> None:
        raise NotImplementedError

    def _split_reference(self, ref: str, arg: str, where: str) -> Tuple[str, str]:
        """('connector', name) or (net prefix, record name) for a reference."""
        if not isinstance(ref, str):
            raise DistillerConfigError(f'{where}: argument {arg!r} must name a record or '
                                       f'connector (a string); got {ref!r}.')
        groups = {'student': self.student_records, **self.teacher_groups()}
        if ref in self._connector_cfgs:
            return 'connector', ref
        if '.' in ref:
            prefix, record = ref.split('.', 1)
            if prefix not in groups:
                raise DistillerConfigError(
                    f'{where}: {arg}={ref!r} names net {prefix!r}; nets here: {sorted(groups)}.')
        else:
            prefix, record = arg, ref
            if prefix not in groups:
                raise DistillerConfigError(
                    f'{where}: {arg}={ref!r} does not say whose record it is; write '
                    f'one of {[f"{g}.{ref}" for g in groups]} or a connector name.')
        if record not in groups[prefix]:
            raise DistillerConfigError(
                f'{where}: {arg}={ref!r}: {prefix} has no record {record!r}. Records of '
                f'{prefix}: {sorted(groups[prefix])}; connectors: {sorted(self._connector_cfgs)}.'
                ' Add it under `recorders` (both nets) or `student_recorders`/'
                '`teacher_recorders`.')
        return prefix, record

    def _build_connector(self, name: str, cfg: dict, values: Dict[str, object]) -> nn.Module:
        where = f'connector {name!r}'
        if 'input' not in cfg:
            raise DistillerConfigError(f'{where} needs input=<record> (e.g. "student.feat").')
        self._connector_inputs[name] = self._split_reference(cfg.pop('input'), 'input', where)
        like = cfg.pop('like', None)
        cls = MODELS.get(cfg['type'])
        if cls is None:
            raise DistillerConfigError(f'{where}: unknown connector type {cfg["type"]!r}.')
        kind, record = self._connector_inputs[name]
        source = self._dry_value((kind, record), values)
        like_value = None
        if like is not None:
            like_value = self._dry_value(self._split_reference(like, 'like', where), values)
        recorder = model = None
        if kind != 'connector':
            group = self._group(kind)
            recorder, model = group.recorders[record], group.model
        try:
            cfg = infer_connector_config(cls, cfg, source, like_value, recorder, model)
        except ConnectorConfigError as err:
            raise DistillerConfigError(f'{where} ({cls.__name__}): {err}') from err
        return MODELS.build(cfg)

    def _group(self, prefix: str) -> RecorderGroup:
        return self.student_records if prefix == 'student' else self.teacher_groups()[prefix]

    def _dry_value(self, key: Tuple[str, str], values: Dict[str, object]):
        if isinstance(key, list):
            return [self._dry_value(k, values) for k in key]
        kind, name = key
        if kind == 'connector':
            connector = self.connectors[name] if name in self.connectors else None
            if connector is None:
                raise DistillerConfigError(f'connector {name!r} is used before it is defined; '
                                           'list connectors in the order they feed each other.')
            was_training = connector.training
            connector.eval()
            with torch.no_grad():
                out = connector(self._dry_value(self._connector_inputs[name], values))
            connector.train(was_training)
            return out
        return values[f'{kind}.{name}']

    def _build_loss(self, name: str, cfg: dict):
        where = f'loss {name!r}'
        cls = MODELS.get(cfg.get('type', ''))
        if cls is None:
            raise DistillerConfigError(f'{where}: unknown loss type {cfg.get("type")!r}.')
        fwd = inspect.signature(cls.forward).parameters
        init = inspect.signature(cls.__init__).parameters
        names = [p for p in fwd if p not in ('self', SAMPLES_ARG) and fwd[p].kind not in (
            inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
        takes_extra = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in fwd.values())
        init_takes_extra = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in init.values())
        mapping, ctor = {}, {}
        for key, value in cfg.items():
            if key in names:
                mapping[key] = value
            elif key == 'type' or key in init or init_takes_extra:
                ctor[key] = value
            elif takes_extra and isinstance(value, (str, list, tuple)):
                mapping[key] = value
            else:
                raise DistillerConfigError(
                    f'{where} ({cls.__name__}): unknown argument {key!r}. forward takes '
                    f'{names}, __init__ takes {[p for p in init if p != "self"]}.')
        required = [p for p in names if fwd[p].default is inspect.Parameter.empty]
        unmapped = [p for p in required if p not in mapping]
        if unmapped:
            raise DistillerConfigError(
                f'{where} ({cls.__name__}): argument(s) {unmapped} of forward are not mapped to '
                f'a record; add e.g. {unmapped[0]}="<record name>" to the loss config.')
        inputs = {arg: self._loss_reference(ref, arg, where) for arg, ref in mapping.items()}
        return MODELS.build(ctor), inputs

    def _loss_reference(self, ref, arg: str, where: str):
        """One key for a reference; a list of keys for a list of references."""
        if isinstance(ref, (list, tuple)):
            if not ref:
                raise DistillerConfigError(f'{where}: argument {arg!r} is an empty list; '
                                           'name at least one record or connector.')
            return [self._split_reference(r, arg, where) for r in ref]
        return self._split_reference(ref, arg, where)

    def _check_losses_on_dry_run(self, values: Dict[str, object]) -> None:
        for name, loss in self.distill_losses.items():
            kwargs = {arg: self._dry_value(key, values)
                      for arg, key in self.loss_inputs[name].items()}
            if takes_data_samples(loss):
                kwargs[SAMPLES_ARG] = None  # the dry run has no labels
            try:
                with torch.no_grad():
                    loss(**kwargs)
            except ShapeMismatchError as err:
                described = ', '.join(f'{a}={self._describe(k)} {_shape(kwargs[a])}'
                                      for a, k in self.loss_inputs[name].items())
                student_ref = self.loss_inputs[name].get('student')
                teacher_ref = self.loss_inputs[name].get('teacher')
                hint = ''
                if (isinstance(student_ref, tuple) and isinstance(teacher_ref, tuple)
                        and student_ref[0] != 'connector'):
                    hint = (f' Map the student through a connector: connectors=dict('
                            f'{student_ref[1]}_s=dict(type="ConvBNConnector", '
                            f'input="{self._describe(student_ref)}", '
                            f'like="{self._describe(teacher_ref)}")) and '
                            f'student="{student_ref[1]}_s" in the loss (channels are inferred;'
                            ' spatial sizes must already agree).')
                raise DistillerConfigError(
                    f'{name} ({type(loss).__name__}) cannot take {described}: {err}{hint}'
                ) from err

    @staticmethod
    def _describe(key: Tuple[str, str]) -> str:
        if isinstance(key, list):
            return '[' + ', '.join(BaseDistiller._describe(k) for k in key) + ']'
        return key[1] if key[0] == 'connector' else f'{key[0]}.{key[1]}'

    # ------------------------------------------------------------------ running
    def _value(self, key: Tuple[str, str], cache: Dict[Tuple[str, str], object]):
        if isinstance(key, list):
            return [self._value(k, cache) for k in key]
        if key not in cache:
            kind, name = key
            if kind == 'connector':
                cache[key] = self.connectors[name](self._value(self._connector_inputs[name],
                                                               cache))
            elif kind == 'student':
                cache[key] = self.student_records.recorders[name].get()
            else:
                cache[key] = self.teacher_groups()[kind].recorders[name].get()
        return cache[key]

    def compute_distill_losses(self, data_samples=None) -> Dict[str, torch.Tensor]:
        """Every distillation loss on the records of the last forward.

        Losses whose ``forward`` takes ``data_samples`` also get the batch's
        data samples (e.g. segmentation labels, to skip ignored pixels).
        """
        cache: Dict[Tuple[str, str], object] = {}
        losses = {}
        for name, loss in self.distill_losses.items():
            scale = self.loss_scales.get(name, 1.0)
            if scale == 0:  # switched off: logged as 0, neither computed nor backpropagated
                losses[name] = torch.zeros((), device=self._device())
                continue
            kwargs = {arg: self._value(key, cache) for arg, key in self.loss_inputs[name].items()}
            if takes_data_samples(loss):
                kwargs[SAMPLES_ARG] = data_samples
            losses[name] = loss(**kwargs) * scale
        return losses

    def _device(self) -> torch.device:
        param = next(self.student.parameters(), None)
        return param.device if param is not None else torch.device('cpu')

    def distill_losses_on(self) -> bool:
        """Whether any distillation loss has a non-zero scale."""
        return any(self.loss_scales.get(name, 1.0) != 0 for name in self.distill_losses)

    def set_loss_scale(self, scale: float, names: Optional[List[str]] = None) -> None:
        """Multiply the named distillation losses (all by default) by ``scale``."""
        for name in names or list(self.distill_losses):
            if name not in self.distill_losses:
                raise KeyError(f'no distillation loss {name!r}; losses: '
                               f'{list(self.distill_losses)}')
            self.loss_scales[name] = float(scale)

    def loss(self, inputs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        """The student's own losses (times ``task_loss_scale``) and the
        distillation losses. Teachers do not run while every distillation
        loss is switched off (scale 0)."""
        if self.teacher_groups() and self.distill_losses_on():
            self.run_teachers(inputs, data_samples)
        with self.student_records.recording():
            losses = self.student(inputs, data_samples, mode='loss')
        if self.task_loss_scale != 1.0:
            losses = scale_losses(losses, self.task_loss_scale)
        distill = self.compute_distill_losses(data_samples)
        clash = set(distill) & set(losses)
        if clash:
            raise DistillerConfigError(f'distillation loss names {sorted(clash)} clash with the '
                                       "student's own loss keys; rename them.")
        losses.update(distill)
        for group in (self.student_records, *self.teacher_groups().values()):
            for recorder in group.recorders.values():
                recorder.reset()  # free the records' memory until the next step
        return losses

    def forward(self, inputs: torch.Tensor, data_samples=None,
                mode: str = 'tensor') -> ForwardResults:
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode in ('predict', 'tensor'):
            return self.student(inputs, data_samples, mode=mode)
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, predict and tensor mode')

    def student_state_dict(self) -> Dict[str, torch.Tensor]:
        """The student's weights, as a plain task model would hold them."""
        return self.student.state_dict()
