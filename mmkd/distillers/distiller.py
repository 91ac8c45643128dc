"""The teacher-student distiller: named frozen teachers, one student, records,
connectors and losses."""
import copy
from abc import ABCMeta
from contextlib import nullcontext
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch
from mmengine.registry import DefaultScope
from torch import nn

from mmkd.connectors import ConnectorConfigError, RecordFacts, infer_connector_config
from mmkd.losses import ShapeMismatchError
from mmkd.recorders import RecorderGroup
from mmkd.registry import MODELS

from .builder import build_model_from_cfg, model_cfg_from
from .errors import DistillerConfigError
from .fast_student import train_connectors_in_channels_last, train_in_channels_last
from .fast_teacher import accelerate_teachers, fast_path_settings
from .loss_scales import LossScales
from .memory_format import output_reader, record_reader
from .nets import STUDENT, TEACHER, DistillationModel, Net
from .recipe import apply_recipe, collect_levels, expand_per_level, resolve_values
from .references import ConnectorRef, RecordRef, Reference, Resolver, describe, parse_reference
from .teacher import FrozenTeacher
from .teacher_cache import TeacherCache, TeacherCacheError, view_keys
from .teacher_inputs import TeacherInputs, build_teacher_inputs
from .wiring import (
    SAMPLES_ARG,
    build_loss,
    check_argument_types,
    scale_losses,
    takes_data_samples,
)

ForwardResults = Union[Dict[str, torch.Tensor], list, torch.Tensor, tuple]
#: Key of a student loss that MMEngine would confuse with its total (``loss``).
TASK_LOSS = 'loss_task'


def _shape(value) -> str:
    if isinstance(value, list):
        return '[' + ', '.join(_shape(v) for v in value) + ']'
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def first_conv_in_channels(model: nn.Module, default: int = 3) -> int:
    """Input channels of the first convolution of ``model``."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return default


class _SetupAfterInit(ABCMeta):
    """Merges a ``recipe=`` into the arguments before any ``__init__`` sees them,
    and finishes a distiller's setup once the outermost ``__init__`` returns, so
    a subclass's ``__init__`` can add to the nets and records first."""

    def __call__(cls, *args, **kwargs):
        # mmkd's parts (recorders, connectors, losses) are built in mmkd's scope, also when
        # the run's default scope is a task package's (a user's config naming 'mmkd.Distiller').
        with _in_mmkd_scope():
            recipe = kwargs.pop('recipe', None)
            if recipe is not None:
                kwargs = apply_recipe(recipe, kwargs, cls.__name__)
            distiller = super().__call__(*args, **kwargs)
            distiller._finish_setup()
        return distiller


def _in_mmkd_scope():
    current = DefaultScope.get_current_instance()
    if current is not None and current.scope_name == 'mmkd':
        return nullcontext()
    return DefaultScope.overwrite_default_scope('mmkd')


@MODELS.register_module(name=['Distiller', 'SingleTeacherDistiller', 'MultiTeacherDistiller'])
class Distiller(DistillationModel, metaclass=_SetupAfterInit):
    """Distils one or several frozen, pre-trained teachers into a student.

    Every teacher is built from its config, loaded from its checkpoint,
    frozen and kept in eval mode. Each training step runs the teachers under
    ``no_grad`` only as far as their records need (a backbone-only
    distillation never runs a teacher's head, a teacher never computes a
    loss, a teacher without records never runs), then the student's own
    ``loss``, then every distillation loss, logged under its own name.
    ``predict``/``tensor`` run the student: ``tools/test.py`` and every
    evaluator work unchanged.

    **Teachers.** ``teacher=dict(cfg_path=..., checkpoint=...)`` names one
    teacher ``'teacher'``; ``teachers=dict(r56=..., r20=...)`` names
    several. A teacher's name prefixes its records in references. Teachers
    are not registered submodules: they are not in the optimizer, not seen
    by DDP, and not in checkpoints unless ``teacher_in_checkpoint=True``
    (under ``teacher.`` for ``teacher=``, ``teachers.<name>.`` otherwise);
    on resume they are loaded again from their own files.

    **References** name what a connector or loss argument reads:

    * ``'name'`` - a connector's output if a connector has that name, else
      the record ``name`` of the net the argument is named after
      (``student=`` / ``teacher=``);
    * ``'student.name'`` / ``'<teacher>.name'`` - that net's record;
    * a list of references (``teacher=['r56.logits', 'r20.logits']``) - the
      argument receives the list of their values, in that order.

    **Connectors**: ``name=dict(type=..., input=<reference>, like=<reference>)``;
    arguments the records determine (channels, OFD's margins, ReviewKD's
    size ratios) are inferred from a dry run at build time, in which every
    loss is also computed once, by the code of a training step, so wrong
    shapes fail before training.

    **Losses**: a name must contain ``'loss'`` (MMEngine sums those). Keys
    that name arguments of the loss's ``forward`` are references; the others
    go to its ``__init__``. A ``forward`` with a ``data_samples`` argument
    receives the batch's data samples (``None`` in the dry run). Their
    factors (and the student's own losses' factor) are in
    :attr:`loss_scales`.

    **Subclasses** add what is theirs through hooks: :meth:`dry_run_samples`,
    :meth:`run_teacher`, :meth:`after_student_forward`,
    :meth:`setup_from_dry_run` and :meth:`extra_losses`. Their ``__init__``
    calls this one first and may then add records; the setup (locating
    records, dry run, connectors, losses, checks) runs once the outermost
    ``__init__`` has returned.

    Args:
        student: The student's model dict, or ``dict(cfg_path=...)``.
        teacher: The one teacher: ``dict(cfg_path=..., checkpoint=...)`` or
            a model dict with ``checkpoint``. ``preprocess='own'`` in it: the
            teacher's own data preprocessor runs on the raw batch (other
            mean/std, RGB/BGR); ``input_size=(H, W)``: its inputs are resized
            (:mod:`mmkd.distillers.teacher_inputs`).
        teachers: Several teachers by name (names without ``'.'``, other
            than ``'student'``).
        recorders: Recorders attached to the student and every teacher.
        student_recorders: Recorders of the student only.
        teacher_recorders: Recorders of the teacher only (with ``teacher=``),
            or teacher name -> its own recorders (with ``teachers=``).
        connectors: Connector configs by name.
        losses: Loss configs by name.
        teacher_in_checkpoint: Save the teachers' weights in checkpoints.
        teacher_norm: ``'eval'`` (stored BN statistics; also ``None``, the
            default) or ``'batch_stats'`` (BN on the batch's statistics
            during training steps, without changing the stored ones: OFD's
            Table 8); one mode for every teacher, or a dict teacher name ->
            mode.
        teacher_fast_path: The teachers' exact fast path
            (:mod:`mmkd.distillers.fast_teacher`): ``True`` (default: BN
            folded into convs, channels-last, the record-free backbone as a
            frozen inference graph), ``False``, or
            ``dict(fold_bn=..., channels_last=..., freeze=..., compile=...)``.
        student_channels_last: Train a convolutional student, and then the
            convolutional connectors, in channels-last memory format (default
            ``True``; each checked on the dry run,
            :mod:`mmkd.distillers.fast_student`).
        dry_run_shape: (C, H, W) of the dry-run input; channels default to
            the student's first conv, size to 64 x 64.
        recipe: A recipe (``'kd'``, ``'mmkd::recipes/kd.py'`` or a file):
            its recorders, connectors and losses, merged with this config's
            own, which win (:mod:`mmkd.distillers.recipe`). Records may name
            what they record by role (``source='<logits>'``), found in each
            net (:mod:`mmkd.recorders.locate`).
        data_preprocessor: Overrides the student's data preprocessor (the
            runner passes the config's top-level one). The distiller and the
            student share one instance.
        init_cfg: MMEngine init config.

    Example (config)::

        model = dict(
            type='SingleTeacherDistiller',
            student=dict(cfg_path='mmkd::models/resnet20_fashionmnist.py'),
            teacher=dict(cfg_path='mmkd::models/resnet56_fashionmnist.py',
                         checkpoint='work_dirs/teacher/best.pth'),
            recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
            losses=dict(loss_kd=dict(type='KDLoss', student='logits',
                                     teacher='logits', tau=4, loss_weight=0.9)))
    """

    #: Whether a config without teachers is refused (self-distillation has none).
    requires_teacher = True

    def __init__(self, student: dict, teacher: Optional[dict] = None,
                 teachers: Optional[Dict[str, dict]] = None, recorders: Optional[dict] = None,
                 student_recorders: Optional[dict] = None,
                 teacher_recorders: Optional[dict] = None, connectors: Optional[dict] = None,
                 losses: Optional[dict] = None, teacher_in_checkpoint: bool = False,
                 teacher_norm: Union[str, Dict[str, str], None] = None,
                 teacher_fast_path: Union[bool, dict] = True,
                 student_channels_last: bool = True,
                 dry_run_shape: Optional[Sequence[int]] = None,
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
        shared = dict(recorders or {})
        self.student_records = RecorderGroup(
            self.student, {**shared, **dict(student_recorders or {})}, STUDENT)
        # Kept out of _modules on purpose (see the class docstring).
        self.__dict__['_frozen_teachers'] = self._build_teachers(
            teacher, teachers, shared, teacher_recorders, teacher_norm)
        # Teachers that preprocess the raw batch themselves or take another size (out of
        # _modules too: they hold preprocessors registered elsewhere).
        self.__dict__['_teacher_inputs'] = build_teacher_inputs(
            {'teacher': teacher} if teacher is not None else dict(teachers or {}),
            self.teachers, self.data_preprocessor)
        self._raw_batch: Optional[dict] = None
        self._dry_running = False
        # A store of teacher outputs by view key (attach_teacher_cache), and this step's
        # records of the teachers it serves, read from it.
        self.__dict__['_teacher_cache'] = None
        self._cached_records: Dict[str, Dict[str, torch.Tensor]] = {}
        if any(t.own for t in self.__dict__['_teacher_inputs'].values()):
            # The raw batch of a step, as it enters the data preprocessor (the model's
            # train_step / val_step or a DDP wrapper's), for the teachers that preprocess it.
            self.data_preprocessor.register_forward_pre_hook(self._keep_raw_batch,
                                                             with_kwargs=True)
        self.teacher_in_checkpoint = teacher_in_checkpoint
        self.teacher_fast_path = fast_path_settings(teacher_fast_path)
        if not isinstance(student_channels_last, bool):
            raise DistillerConfigError('student_channels_last must be True or False; got '
                                       f'{student_channels_last!r}.')
        self.student_channels_last = student_channels_last
        self._connector_cfgs = dict(connectors or {})
        self._loss_cfgs = dict(losses or {})
        self._dry_run_shape = dry_run_shape
        self.connectors = nn.ModuleDict()
        self.distill_losses = nn.ModuleDict()
        self.connector_inputs: Dict[str, Reference] = {}
        self.loss_inputs: Dict[str, Dict[str, Reference]] = {}
        self.loss_scales = LossScales([])
        self._register_state_dict_hook(Distiller._add_teacher_state)
        self._register_load_state_dict_pre_hook(self._load_teacher_state, with_module=False)

    # ------------------------------------------------------------------ teachers
    def _build_teachers(self, teacher, teachers, shared: dict, teacher_recorders,
                        teacher_norm) -> Dict[str, FrozenTeacher]:
        if teacher is not None and teachers is not None:
            raise DistillerConfigError('give either teacher=dict(...) (one teacher) or '
                                       'teachers=dict(<name>=dict(...), ...), not both.')
        self._one_teacher = teacher is not None
        if teacher is not None:
            cfgs = {'teacher': teacher}
            own = {'teacher': dict(teacher_recorders or {})}
        else:
            cfgs = dict(teachers or {})
            own = {k: dict(v or {}) for k, v in dict(teacher_recorders or {}).items()}
        if not cfgs and self.requires_teacher:
            raise DistillerConfigError(
                f'{type(self).__name__} needs teacher=dict(cfg_path=<teacher config>, '
                'checkpoint=<teacher weights>); a distiller with several teachers needs '
                'teachers=dict(<name>=dict(cfg_path=..., checkpoint=...), ...).')
        for name in cfgs:
            if not isinstance(name, str) or not name or '.' in name or name == STUDENT:
                raise DistillerConfigError(
                    f'teacher name {name!r} cannot prefix references; use a name without '
                    f'"." other than "{STUDENT}" (e.g. "t1" or "r56").')
        unknown = sorted(set(own) - set(cfgs))
        if unknown:
            raise DistillerConfigError(f'teacher_recorders names teacher(s) {unknown}; the '
                                       f'teachers are {sorted(cfgs)}.')
        norms = dict(teacher_norm) if isinstance(teacher_norm, dict) else {
            name: teacher_norm or 'eval' for name in cfgs}
        unknown = sorted(set(norms) - set(cfgs))
        if unknown:
            raise DistillerConfigError(f'teacher_norm names teacher(s) {unknown}; the teachers '
                                       f'are {sorted(cfgs)}.')
        return {name: FrozenTeacher(
            name, cfg, {**shared, **own.get(name, {})}, norms.get(name, 'eval'),
            'teacher.' if self._one_teacher else f'teachers.{name}.')
            for name, cfg in cfgs.items()}

    @property
    def frozen_teachers(self) -> Dict[str, FrozenTeacher]:
        """Every teacher by name, with its records and settings."""
        return self.__dict__['_frozen_teachers']

    @property
    def teachers(self) -> Dict[str, nn.Module]:
        """The teachers' nets by name (frozen, eval mode)."""
        return {name: t.net for name, t in self.frozen_teachers.items()}

    @property
    def teacher(self) -> nn.Module:
        """The teacher's net, for a distiller with exactly one teacher."""
        if len(self.frozen_teachers) != 1:
            raise AttributeError('teacher')  # explained by __getattr__
        return next(iter(self.frozen_teachers.values())).net

    def __getattr__(self, name: str):
        if name == 'teacher':  # the property above refused: say why
            raise AttributeError(f'{type(self).__name__} has {len(self.frozen_teachers)} '
                                 f'teachers {list(self.frozen_teachers)}, so no single '
                                 '`teacher`; use model.teachers[<name>].')
        return super().__getattr__(name)

    @property
    def records(self) -> Dict[str, RecorderGroup]:
        """The recorder group of every net, by the name references use."""
        return {STUDENT: self.student_records,
                **{name: t.records for name, t in self.frozen_teachers.items()}}

    def nets(self) -> List[Net]:
        nets = [Net(STUDENT, STUDENT, self.student, log_prefix=STUDENT)]
        for name, t in self.frozen_teachers.items():
            prefix = TEACHER if self._one_teacher else f'{TEACHER}/{name}'
            nets.append(Net(name, TEACHER, t.net, t.checkpoint, t.runs, prefix))
        return nets

    # ------------------------------------------------------------------ hooks
    def dry_run_samples(self, inputs: torch.Tensor) -> Optional[list]:
        """Data samples passed with the dry-run input (``None`` by default)."""
        return None

    def run_teacher(self, teacher: FrozenTeacher, inputs: torch.Tensor, data_samples) -> None:
        """One teacher's ``tensor`` forward, recorded and ended once its records
        are complete (called under ``no_grad``)."""
        with teacher.records.recording(stop_when_complete=True):
            teacher.net(inputs, data_samples, mode='tensor')

    def after_student_forward(self, data_samples) -> None:
        """Runs after the student's forward, before the losses (nothing by default)."""

    def setup_from_dry_run(self, resolve: Resolver) -> None:
        """Build what depends on the dry run's records, before the connectors
        (nothing by default). ``resolve(RecordRef(net, name))`` gives a value."""

    def extra_losses(self, resolve: Resolver, data_samples) -> Dict[str, torch.Tensor]:
        """Losses of the subclass's own, added to the configured ones (none by
        default). ``data_samples`` is ``None`` in the build-time check."""
        return {}

    # ------------------------------------------------------------------ setup
    def _finish_setup(self) -> None:
        """Locate records, dry run, build connectors and losses, check them."""
        self._expand_located()
        self._check_names()
        was_training = self.training
        self.train(False)
        self._dry_running = True
        try:
            with torch.no_grad():
                inputs = self._dry_input()
                samples = self.dry_run_samples(inputs)
                self._locate_records(inputs, samples)
                # Pass 1 keeps references and sees which ones later in-place ops
                # overwrite; pass 2 records with the copies that pass 1 asked for.
                for _ in range(2):
                    self._forward_nets(inputs, samples, 'tensor', run_teachers=True)
                    for group in self.records.values():
                        group.decide_clones()
                accelerate_teachers(self, inputs, samples)
                train_in_channels_last(self, inputs, samples)
                # Parts built from here are evaluated on the dry run in eval mode, so
                # that no BN statistics move before training.
                resolve = self._resolver()
                self.setup_from_dry_run(resolve)
                self.train(False)
                for name, cfg in self._connector_cfgs.items():
                    self.connectors[name] = self._build_connector(name, dict(cfg), resolve)
                    self.train(False)
                names = {net: list(group) for net, group in self.records.items()}
                for name, cfg in self._loss_cfgs.items():
                    self.distill_losses[name], self.loss_inputs[name] = build_loss(
                        name, dict(cfg), names, self._connector_cfgs)
                self.train(False)
                self.loss_scales = LossScales(self.distill_losses)
                self._check_losses(resolve)
                train_connectors_in_channels_last(self)
        finally:
            self._dry_running = False
            self.train(was_training)
            self._reset_records()

    def _expand_located(self) -> None:
        """One connector and loss per level where they read per-level records
        (``'<fpn>'``), and ``'<name>'`` values found in the student."""
        connectors, losses = expand_per_level(self._connector_cfgs, self._loss_cfgs,
                                              collect_levels(self.records))
        self._connector_cfgs = resolve_values(connectors, self.student, 'connector')
        self._loss_cfgs = resolve_values(losses, self.student, 'loss')

    def _check_names(self) -> None:
        for name in self._connector_cfgs:
            if any(name in group for group in self.records.values()):
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

    def _locate_records(self, inputs: torch.Tensor, samples) -> None:
        for name, group in self.records.items():
            net = self.student if name == STUDENT else self.frozen_teachers[name].net
            group.locate(lambda net=net: net(inputs, samples, mode='tensor'))

    def _build_connector(self, name: str, cfg: dict, resolve: Resolver) -> nn.Module:
        where = f'connector {name!r}'
        if 'input' not in cfg:
            raise DistillerConfigError(f'{where} needs input=<record> (e.g. "student.feat").')
        names = {net: list(group) for net, group in self.records.items()}
        source_ref = parse_reference(cfg.pop('input'), 'input', where, names,
                                     self._connector_cfgs)
        like = cfg.pop('like', None)
        like_ref = None if like is None else parse_reference(like, 'like', where, names,
                                                             self._connector_cfgs)
        cls = MODELS.get(cfg['type'])
        if cls is None:
            raise DistillerConfigError(f'{where}: unknown connector type {cfg["type"]!r}.')
        self.connector_inputs[name] = source_ref
        facts = RecordFacts()
        if isinstance(source_ref, RecordRef):
            recorder = self.records[source_ref.net][source_ref.record]
            facts = RecordFacts(self.records[source_ref.net].model, recorder.norm_layers())
        check_argument_types(cls, cfg, where)
        try:
            cfg = infer_connector_config(cls, cfg, resolve(source_ref),
                                         None if like_ref is None else resolve(like_ref), facts)
        except ConnectorConfigError as err:
            raise DistillerConfigError(f'{where} ({cls.__name__}): {err}') from err
        return MODELS.build(cfg)

    def _check_losses(self, resolve: Resolver) -> None:
        """Every loss computed once on the dry run, as in a training step."""
        for name, loss in self.distill_losses.items():
            try:
                self._loss_value(name, resolve, None)
            except ShapeMismatchError as err:
                refs = self.loss_inputs[name]
                described = ', '.join(f'{a}={describe(r)} {_shape(resolve(r))}'
                                      for a, r in refs.items())
                raise DistillerConfigError(
                    f'{name} ({type(loss).__name__}) cannot take {described}: '
                    f'{err}{self._connector_hint(refs, err)}') from err
        self.extra_losses(resolve, None)

    @staticmethod
    def _connector_hint(refs: Mapping[str, Reference], err: ShapeMismatchError) -> str:
        student, teacher = refs.get('student'), refs.get('teacher')
        if not (isinstance(student, RecordRef) and isinstance(teacher, (RecordRef,
                                                                        ConnectorRef))):
            return ''
        if len(err.student_shape) == 2 and len(err.teacher_shape) == 2:
            return (f' For (N, C) values: logits of nets that predict different classes '
                    f'({err.student_shape[1]} and {err.teacher_shape[1]}) cannot be compared '
                    'class by class (distil features instead, or give both nets the same '
                    'classes); embeddings of different widths are mapped by connectors=dict('
                    f'{student.record}_s=dict(type="LinearConnector", input="{student}", '
                    f'like="{teacher}")) and student="{student.record}_s" in the loss.')
        return (f' Map the student through a connector: connectors=dict('
                f'{student.record}_s=dict(type="ConvBNConnector", input="{student}", '
                f'like="{teacher}")) and student="{student.record}_s" in the loss (channels '
                'are inferred; spatial sizes must already agree).')

    # ------------------------------------------------------------------ running
    def _resolver(self) -> Resolver:
        records = self.records
        return Resolver(record_reader(records, self._cached_records),
                        self.connectors, self.connector_inputs, output_reader)

    def _running_teachers(self) -> List[FrozenTeacher]:
        return [t for t in self.frozen_teachers.values() if t.runs]

    def _distilling(self) -> bool:
        return bool(self._running_teachers()) and self.loss_scales.any_distillation_on()

    @torch.no_grad()
    def run_teachers(self, inputs: torch.Tensor, data_samples=None) -> None:
        """Run each teacher with records (no grad) as far as its records need,
        on its own inputs where it has them (:mod:`.teacher_inputs`). In a
        training step with a teacher cache, a cached teacher's records are read
        from the cache where it holds the batch's views, and written to it where
        it does not."""
        cache = self.teacher_cache
        keys = view_keys(data_samples) if (
            cache is not None and self.training and not self._dry_running) else None
        for teacher in self._running_teachers():
            cached = keys is not None and teacher.name in cache.teachers
            if cached and cache.has(keys):
                self._cached_records[teacher.name] = {
                    record: cache.read(f'{teacher.name}.{record}', keys, inputs.device)
                    for record in teacher.records}
                continue
            own = self.__dict__['_teacher_inputs'].get(teacher.name)
            if own is None:
                batch = (inputs, data_samples)
            elif own.own and not self._dry_running and not self._raw_batch_matches(inputs):
                raise DistillerConfigError(
                    f'teacher {teacher.name!r} preprocesses the raw batch itself, and no raw '
                    f'batch of {len(inputs)} image(s) came through the data preprocessor: '
                    'preprocess the batch with model.data_preprocessor(data, training) right '
                    "before calling the model, as MMEngine's train_step and val_step do.")
            else:
                batch = own.prepare(inputs, data_samples, self._raw_batch)
            with teacher.norm_context(self.training):
                self.run_teacher(teacher, *batch)
            teacher.check_finite()
            if cached:
                read = record_reader(self.records)
                cache.write({f'{teacher.name}.{record}': read(RecordRef(teacher.name, record))
                             for record in teacher.records}, keys)
        self._raw_batch = None

    # ------------------------------------------------------------------ teacher cache
    @property
    def teacher_cache(self) -> Optional[TeacherCache]:
        """The attached teacher cache (:meth:`attach_teacher_cache`), or ``None``."""
        return self.__dict__['_teacher_cache']

    @torch.no_grad()
    def teacher_cache_fields(self) -> Dict[str, int]:
        """What a teacher cache of this distiller stores: ``'<teacher>.<record>'``
        -> values per sample, for every teacher whose records are all per-sample
        vectors (logits, embeddings). Found by running the teachers on the dry-run
        input. A teacher with a feature-map record keeps running online.

        Raises:
            TeacherCacheError: if no teacher can be cached.
        """
        was_training = self.training
        self.train(False)
        self._dry_running = True
        fields, kept_online = {}, {}
        try:
            inputs = self._dry_input()
            self.run_teachers(inputs, self.dry_run_samples(inputs))
            read = self._resolver()
            for teacher in self._running_teachers():
                shapes = {record: read(RecordRef(teacher.name, record))
                          for record in teacher.records}
                shapes = {record: tuple(value.shape) if isinstance(value, torch.Tensor)
                          else type(value).__name__ for record, value in shapes.items()}
                if all(isinstance(shape, tuple) and len(shape) == 2 for shape in shapes.values()):
                    fields.update({f'{teacher.name}.{record}': shape[1]
                                   for record, shape in shapes.items()})
                else:
                    kept_online[teacher.name] = shapes
        finally:
            self._dry_running = False
            self.train(was_training)
            self._reset_records()
        if not fields:
            described = '; '.join(f'{name}: {shapes}' for name, shapes in kept_online.items())
            raise TeacherCacheError(
                'a teacher cache stores per-sample vectors (logits, embeddings), and every '
                f'teacher records something else ({described}); feature-map methods run their '
                'teacher online: remove teacher_cache from the config.')
        return fields

    def fill_teacher_cache(self, inputs: torch.Tensor, data_samples) -> None:
        """Run the teachers on a preprocessed training batch so that the cached
        ones store their records for the batch's views (``tools/cache_teacher.py``)."""
        was_training = self.training
        self.train(True)
        try:
            self.run_teachers(inputs, data_samples)
        finally:
            self._reset_records()
            self.train(was_training)

    def attach_teacher_cache(self, cache: Optional[TeacherCache]) -> None:
        """Read the records of the cache's teachers from ``cache`` (``None`` detaches)."""
        self.__dict__['_teacher_cache'] = cache

    def _keep_raw_batch(self, _module, args, kwargs) -> None:
        self._raw_batch = args[0] if args else kwargs.get('data')

    def _raw_batch_matches(self, inputs: torch.Tensor) -> bool:
        """A raw batch is kept and holds as many images as the preprocessed one."""
        raw = self._raw_batch
        if raw is None or 'inputs' not in raw:
            return False
        return len(raw['inputs']) == len(inputs)

    def preprocessor_of(self, name: str) -> nn.Module:
        """The data preprocessor through which net ``name`` sees a raw batch
        (``preprocessor_of(name)(data_batch, False)``): a teacher's own (see
        :mod:`.teacher_inputs`), else the distiller's."""
        own: Optional[TeacherInputs] = self.__dict__['_teacher_inputs'].get(name)
        return self.data_preprocessor if own is None else own

    def _forward_nets(self, inputs: torch.Tensor, data_samples, mode: str,
                      run_teachers: bool):
        """Teachers (if asked), the student recorded, then :meth:`after_student_forward`."""
        if run_teachers:
            self.run_teachers(inputs, data_samples)
        with self.student_records.recording():
            out = self.student(inputs, data_samples, mode=mode)
        self.after_student_forward(data_samples)
        return out

    def _loss_value(self, name: str, resolve: Resolver, data_samples) -> torch.Tensor:
        loss = self.distill_losses[name]
        kwargs = {arg: resolve(ref) for arg, ref in self.loss_inputs[name].items()}
        if takes_data_samples(loss):
            kwargs[SAMPLES_ARG] = data_samples
        return loss(**kwargs)

    @torch.no_grad()
    def distillation_inputs(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'
                            ) -> Dict[str, Dict[str, Union[torch.Tensor, list]]]:
        """What each distillation loss receives for one batch, by loss and argument.

        Runs the teachers and the student (in ``mode``) with their records, as
        a training step does, and resolves every loss's references with the
        step's resolver: a reference to a connector gives the connector's
        output (the student's feature after its connector), a list of
        references the list of values. No loss is computed, nothing is
        optimised, and the records are freed afterwards. Call it in eval mode
        to see the values validation would (``tools/visualizations/vis_features.py``).

        Args:
            inputs: A preprocessed batch (the data preprocessor's ``inputs``).
            data_samples: Its data samples (detectors read image metadata).
            mode: The student's forward mode: ``'tensor'``, or ``'loss'`` (needs
                ground truth; a detector's RoI records then use the RoIs
                that training samples).

        Returns:
            ``{loss name: {argument: value}}`` for every reference argument
            (``data_samples`` is not one).
        """
        try:
            self._forward_nets(inputs, data_samples, mode, run_teachers=True)
            resolve = self._resolver()
            return {name: {arg: resolve(ref) for arg, ref in refs.items()}
                    for name, refs in self.loss_inputs.items()}
        finally:
            self._reset_records()

    def compute_distill_losses(self, data_samples=None,
                               resolve: Optional[Resolver] = None) -> Dict[str, torch.Tensor]:
        """Every distillation loss on the records of the last forward, times its
        factor; a loss with factor 0 is logged as 0, neither computed nor
        backpropagated. Then :meth:`extra_losses`."""
        resolve = resolve or self._resolver()
        losses = {}
        for name in self.distill_losses:
            scale = self.loss_scales[name]
            if scale == 0:
                losses[name] = torch.zeros((), device=self._device())
                continue
            losses[name] = self._loss_value(name, resolve, data_samples) * scale
        losses.update(self.extra_losses(resolve, data_samples))
        return losses

    def _device(self) -> torch.device:
        param = next(self.student.parameters(), None)
        return param.device if param is not None else torch.device('cpu')

    def _reset_records(self) -> None:
        for group in self.records.values():
            group.reset()  # free the records' memory until the next step
        self._cached_records.clear()

    def loss(self, inputs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        """The student's own losses (times their factor) and the distillation
        losses. Teachers do not run while every distillation loss is off.

        A student loss named ``loss`` (mmpretrain classifiers) is returned as
        ``loss_task``, so that MMEngine's ``loss``, the total it optimises and
        logs, is not shadowed by the student's cross-entropy.
        """
        losses = self._forward_nets(inputs, data_samples, 'loss', self._distilling())
        losses = {(TASK_LOSS if k == 'loss' else k): v for k, v in losses.items()}
        if self.loss_scales.task != 1.0:
            losses = scale_losses(losses, self.loss_scales.task)
        distill = self.compute_distill_losses(data_samples)
        clash = set(distill) & set(losses)
        if clash:
            raise DistillerConfigError(f'distillation loss names {sorted(clash)} clash with the '
                                       "student's own loss keys; rename them.")
        losses.update(distill)
        self._reset_records()
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

    # ------------------------------------------------------------------ plumbing
    def _apply(self, fn, *args, **kwargs):
        """Device and dtype moves (``.to``, ``.cuda``) reach the teachers too."""
        super()._apply(fn, *args, **kwargs)
        for teacher in self.frozen_teachers.values():
            teacher.net._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True) -> 'Distiller':
        super().train(mode)
        for teacher in self.frozen_teachers.values():
            teacher.net.eval()
        return self

    @staticmethod
    def _add_teacher_state(module, state_dict, prefix, _local_metadata):
        if module.teacher_in_checkpoint:
            for teacher in module.frozen_teachers.values():
                for key, value in teacher.net.state_dict().items():
                    state_dict[f'{prefix}{teacher.state_prefix}{key}'] = value
        return state_dict

    def _load_teacher_state(self, state_dict, prefix, *_args) -> None:
        """Take the teachers' keys (if a checkpoint has them) for the teachers."""
        for teacher in self.frozen_teachers.values():
            head = f'{prefix}{teacher.state_prefix}'
            keys = [k for k in state_dict if k.startswith(head)]
            if keys:
                teacher.net.load_state_dict({k[len(head):]: state_dict.pop(k) for k in keys})
