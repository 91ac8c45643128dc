"""How much a distillation step costs above its limit.

A distillation step cannot cost less than one training step of the student
plus one inference pass of each teacher on the same batch (for a cohort of
nets that learn from each other: the sum of the members' training steps).
This module times, on the same batches:

* the *limit legs*: (a) the student's training step alone (a copy of the
  student with its own optimizer: forward, loss, backward, step), (b) each
  teacher's inference (``no_grad``, eval mode);
* the *step leg*: (c) the model's own ``train_step``;
* *reference legs* (r), timed but not part of the limit: the student as
  built (contiguous) beside one trained in channels-last format
  (:mod:`mmkd.distillers.fast_student`), the plain teacher (no fast path,
  :mod:`mmkd.distillers.fast_teacher`) beside each accelerated one, and,
  for a distiller whose only loss is KD on the nets' logits, the same KD
  step written in plain eager PyTorch (:func:`kd_reference_leg`); the
  report gives each leg over its reference.

Legs run round-robin on each batch, in an order that rotates from batch to
batch, so that noise from other processes reaches every leg alike. The
result holds the median and interquartile range of each leg, the ratio
``c / (a + b)``, the peak memory of each leg, and parameter counts
(connectors are the learnable parts a method adds).

The legs of a model come from :func:`~mmkd.distillers.nets_of`, so every
kind of model (plain, teacher-student, self-distilling, cohort) is measured
the same way. The driver that loads a config and prints the report is
``tools/benchmark/distill_overhead.py``.
"""
import copy
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.runner.amp import autocast
from torch import nn

from mmkd.distillers import (
    MEMBER,
    STUDENT,
    TEACHER,
    DistillationModel,
    Distiller,
    Net,
    RecordRef,
    nets_of,
)
from mmkd.distillers.fast_teacher import plain_copy
from mmkd.distillers.memory_format import is_channels_last, to_standard_format
from mmkd.losses import KDLoss
from mmkd.recorders import ModuleOutputs, Recording
from mmkd.utils import unwrap

LIMIT = 'limit'
STEP = 'step'
REFERENCE = 'reference'
#: Clocks the legs can be timed with: wall time, or the process's CPU time
#: (steadier on a shared machine; with one thread, the compute time).
CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}


@dataclass
class Leg:
    """One thing timed on each batch.

    Args:
        name: Short key (``'student'``, ``'teacher'``, ``'distill'``...).
        label: What the report prints.
        role: ``'limit'`` (summed into the limit), ``'step'`` (the
            measured step) or ``'reference'`` (compared with one leg).
        run: Timed call; receives what ``prepare`` returned.
        prepare: Untimed call on the raw batch before each ``run``; by
            default a deep copy, since steps may change their batch.
        reference_for: For a reference leg, the name of the leg it is the
            reference of.
    """
    name: str
    label: str
    role: str
    run: Callable[[Any], Any]
    prepare: Callable[[dict], Any] = copy.deepcopy
    reference_for: Optional[str] = None


@dataclass
class BenchContext:
    """What building the legs needs besides the model.

    Args:
        optim_wrapper: Optim wrapper config for every training leg (AMP
            already applied when asked for).
        device: The device the model is on.
        amp_dtype: Autocast dtype of inference legs, or ``None``.
    """
    optim_wrapper: dict
    device: str = 'cpu'
    amp_dtype: Optional[torch.dtype] = None

    def autocast(self) -> ContextManager:
        """Autocast to ``amp_dtype`` on the device, or nothing without AMP."""
        if self.amp_dtype is None:
            return nullcontext()
        return autocast(device_type=self.device.split(':')[0], dtype=self.amp_dtype)


def train_step_leg(name: str, label: str, net: nn.Module, ctx: BenchContext,
                   role: str = LIMIT, reference_for: Optional[str] = None) -> Leg:
    """A leg that runs ``net.train_step`` with its own optim wrapper.

    Args:
        name: The leg's key.
        label: The leg's label.
        net: A model with ``train_step`` (set to train mode here).
        ctx: Gives the optim wrapper config.
        role: ``'limit'``, ``'step'`` or ``'reference'``.
        reference_for: See :class:`Leg`.

    Returns:
        The leg.
    """
    net.train()
    optim_wrapper = build_optim_wrapper(net, copy.deepcopy(ctx.optim_wrapper))
    return Leg(name, label, role, lambda batch: net.train_step(batch, optim_wrapper),
               reference_for=reference_for)


def inference_leg(name: str, label: str, net: nn.Module, preprocessor: nn.Module,
                  ctx: BenchContext, role: str = LIMIT, reference_for: Optional[str] = None
                  ) -> Leg:
    """A leg that runs ``net`` in eval mode under ``no_grad`` on preprocessed
    inputs (preprocessing is untimed: the step does it once for all nets).

    Args:
        name: The leg's key.
        label: The leg's label.
        net: The network (set to eval mode here); called with
            ``mode='tensor'``.
        preprocessor: The data preprocessor of the model the net is part of.
        ctx: Gives the autocast of AMP runs.
        role: ``'limit'`` or ``'reference'``.
        reference_for: See :class:`Leg`.

    Returns:
        The leg.
    """
    net.eval()

    def prepare(batch: dict) -> dict:
        with torch.no_grad():
            return preprocessor(copy.deepcopy(batch), True)

    def run(data: dict) -> None:
        with torch.no_grad(), ctx.autocast():
            net(data['inputs'], data.get('data_samples'), mode='tensor')

    return Leg(name, label, role, run, prepare, reference_for)


def member_optim_wrapper(optim_wrapper: dict, name: str) -> dict:
    """The optim wrapper config of one cohort member trained alone: the
    shared settings with its ``members.<name>`` overrides merged in (nested
    dicts key by key, as the cohort's optim wrapper constructor does),
    without the cohort's ``constructor``.

    Args:
        optim_wrapper: The config's ``optim_wrapper``.
        name: The member's name.

    Returns:
        A plain optim wrapper config.
    """
    cfg = Config(copy.deepcopy(dict(optim_wrapper)))
    cfg.pop('constructor', None)
    overrides = dict(cfg.pop('members', None) or {})
    if name in overrides:
        cfg.merge_from_dict(copy.deepcopy(dict(overrides[name])))
    return cfg.to_dict()


def _distils(model: nn.Module) -> bool:
    """Whether ``model`` is a distiller or cohort (and so has a (c) step)."""
    return isinstance(unwrap(model), DistillationModel)


def _limit_legs(net: Net, model: nn.Module, ctx: BenchContext) -> List[Leg]:
    """The limit legs of one net of a distillation model."""
    if net.role == STUDENT:
        key = STUDENT if net.name == STUDENT else f'{STUDENT}:{net.name}'
        return [train_step_leg(key, f'(a) {net.name} train step', copy.deepcopy(net.module),
                               ctx)]
    if net.role == TEACHER:
        if not net.runs_in_step:
            return []
        key = TEACHER if net.name == TEACHER else f'{TEACHER}:{net.name}'
        return [inference_leg(key, f'(b) {net.name} inference', net.module,
                              unwrap(model).data_preprocessor, ctx)]
    alone = BenchContext(member_optim_wrapper(ctx.optim_wrapper, net.name), ctx.device,
                         ctx.amp_dtype)
    return [train_step_leg(f'{MEMBER}:{net.name}', f'(a) {net.name} train step',
                           copy.deepcopy(net.module), alone)]


@dataclass
class KDReference:
    """What the hand-written KD step needs of a KD-on-logits distiller.

    Args:
        teacher: The teacher's name.
        tau: KD's temperature.
        kd_weight: KD's loss weight.
        ce_weight: The student's cross-entropy weight.
    """
    teacher: str
    tau: float
    kd_weight: float
    ce_weight: float


def _outputs_record(group, name: str, net: nn.Module, inputs: torch.Tensor) -> bool:
    """Whether record ``name`` is what ``net`` returns in ``tensor`` mode."""
    recorder = group[name]
    if not isinstance(recorder, ModuleOutputs) or recorder.item is not None or \
            getattr(recorder, 'as_map', False):
        return False
    with torch.no_grad(), Recording([recorder]):
        out = net(inputs, mode='tensor')
    try:
        return isinstance(out, torch.Tensor) and torch.equal(recorder.get(), out)
    finally:
        recorder.reset()


def kd_reference(model: nn.Module, ctx: BenchContext, sample: Optional[dict] = None
                 ) -> Optional[KDReference]:
    """The settings of the hand-written KD step, if ``model`` is a plain KD
    distiller that one can write by hand: a :class:`~mmkd.distillers.Distiller`
    whose only loss is :class:`~mmkd.losses.KDLoss` (batch mean, no logit
    standardisation, factor 1) on the two nets' ``tensor``-mode outputs (checked on
    ``sample``), no connectors, a student trained with plain cross-entropy
    on hard labels, one teacher on the shared inputs in eval BN mode, a plain
    optimizer (no parameter-wise settings, gradient clipping or
    accumulation), fp32. ``None`` otherwise (the leg is skipped).
    """
    inner = unwrap(model)
    if type(inner) is not Distiller or sample is None or ctx.amp_dtype is not None:
        return None
    if len(inner.distill_losses) != 1 or len(inner.connectors):
        return None
    (name, loss), = inner.distill_losses.items()
    if not isinstance(loss, KDLoss) or loss.reduction != 'batchmean' or \
            loss.logit_standardization or inner.loss_scales[name] != 1 or \
            inner.loss_scales.task != 1:
        return None
    refs = inner.loss_inputs[name]
    student, teacher = refs.get('student'), refs.get('teacher')
    if not (isinstance(student, RecordRef) and isinstance(teacher, RecordRef)
            and student.net == STUDENT and teacher.net in inner.frozen_teachers):
        return None
    frozen = inner.frozen_teachers[teacher.net]
    preprocessor_of = getattr(inner, 'preprocessor_of', None)
    if frozen.norm != 'eval' or (preprocessor_of is not None and
                                 preprocessor_of(teacher.net) is not inner.data_preprocessor):
        return None
    head_loss = getattr(getattr(inner.student, 'head', None), 'loss_module', None)
    if type(head_loss).__name__ != 'CrossEntropyLoss' or any(
            getattr(head_loss, key, False) for key in ('use_sigmoid', 'use_soft')) or \
            getattr(head_loss, 'class_weight', None) is not None or \
            getattr(head_loss, 'reduction', 'mean') != 'mean':
        return None
    if getattr(inner.data_preprocessor, 'batch_augments', None) is not None:
        return None
    optim = ctx.optim_wrapper
    if optim.get('type', 'OptimWrapper') != 'OptimWrapper' or optim.get('paramwise_cfg') or \
            optim.get('clip_grad') or optim.get('accumulative_counts', 1) != 1 or \
            not hasattr(torch.optim, str(optim.get('optimizer', {}).get('type'))):
        return None
    with torch.no_grad():
        inputs = inner.data_preprocessor(copy.deepcopy(sample), False)['inputs']
    if not (_outputs_record(inner.student_records, student.record, inner.student, inputs) and
            _outputs_record(frozen.records, teacher.record, frozen.net, inputs)):
        return None
    return KDReference(teacher.net, float(loss.tau), float(loss.loss_weight),
                       float(head_loss.loss_weight))


def kd_reference_leg(model: nn.Module, ctx: BenchContext, spec: KDReference) -> Leg:
    """The KD step of ``model`` written in plain eager PyTorch, as one would by
    hand: on copies of the student and of the plain teacher (no fast path),
    the model's data preprocessor, the teacher's ``tensor`` forward under
    ``no_grad``, the student's ``tensor`` forward,
    ``ce_weight * CE + kd_weight * tau^2 * KL(p_t || p_s)``, backward and a
    step of the config's optimizer (a ``torch.optim`` class with its
    arguments). It is the reference of the (c) step leg; a call returns the
    step's loss.

    Args:
        model: The distiller (see :func:`kd_reference`).
        ctx: Gives the optimizer config.
        spec: From :func:`kd_reference`.

    Returns:
        The leg.
    """
    inner = unwrap(model)
    student = contiguous_copy(inner.student).train()
    teacher = plain_copy(inner.teachers[spec.teacher]).eval()
    preprocessor = copy.deepcopy(inner.data_preprocessor)
    optimizer_cfg = dict(ctx.optim_wrapper['optimizer'])
    optimizer = getattr(torch.optim, optimizer_cfg.pop('type'))(
        [p for p in student.parameters() if p.requires_grad], **optimizer_cfg)
    tau = spec.tau

    def run(batch: dict) -> torch.Tensor:
        data = preprocessor(batch, True)
        inputs = data['inputs']
        labels = torch.cat([sample.gt_label for sample in data['data_samples']])
        with torch.no_grad():
            teacher_logits = teacher(inputs, mode='tensor')
        logits = student(inputs, mode='tensor')
        kd = F.kl_div(F.log_softmax(logits / tau, dim=1),
                      F.log_softmax(teacher_logits / tau, dim=1),
                      reduction='batchmean', log_target=True) * tau**2
        loss = spec.ce_weight * F.cross_entropy(logits, labels) + spec.kd_weight * kd
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()

    return Leg('reference', '(r) hand-written KD step', REFERENCE, run,
               reference_for='distill')


def contiguous_copy(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` in the contiguous memory format (a student as
    built, without :mod:`~mmkd.distillers.fast_student`)."""
    copied = copy.deepcopy(net)
    to_standard_format(copied)
    return copied


def reference_legs(model: nn.Module, ctx: BenchContext, sample: Optional[dict] = None
                   ) -> List[Leg]:
    """The reference legs of ``model``: a student that the distiller trains in
    channels-last format as built (contiguous), each running teacher with a
    fast path as built (no fast path), and the hand-written KD step where
    :func:`kd_reference` finds one."""
    inner = unwrap(model)
    if not isinstance(inner, Distiller):
        return []
    legs = []
    if is_channels_last(inner.student):
        legs.append(train_step_leg(f'plain:{STUDENT}', f'(r) {STUDENT} train step, as built',
                                   contiguous_copy(inner.student), ctx, REFERENCE, STUDENT))
    for name, frozen in inner.frozen_teachers.items():
        if frozen.runs and frozen.fast_path is not None:
            key = TEACHER if name == TEACHER else f'{TEACHER}:{name}'
            legs.append(inference_leg(f'plain:{key}', f'(r) {name} inference, plain',
                                      plain_copy(frozen.net), inner.data_preprocessor, ctx,
                                      REFERENCE, key))
    spec = kd_reference(model, ctx, sample)
    if spec is not None:
        legs.append(kd_reference_leg(model, ctx, spec))
    return legs


def legs_for(model: nn.Module, ctx: BenchContext, sample: Optional[dict] = None) -> List[Leg]:
    """The legs of ``model``, from :func:`~mmkd.distillers.nets_of`.

    A plain model gives its own training step, (a) only. A distiller gives
    (a) a copy of each student trained alone, (b) the inference of each
    teacher that runs in a step (one with records), (c) the model's own
    step and its reference legs (:func:`reference_legs`); a cohort gives (a)
    a copy of each member trained alone (with its ``members.<name>``
    optimizer overrides) and (c) the cohort's step.

    Args:
        model: The model, on its device.
        ctx: Optim wrapper config, device and AMP of the run.
        sample: A raw batch, to check what the hand-written KD step needs
            (without it, that leg is left out).

    Returns:
        The limit legs, then the step leg if there is one, then the
        reference legs.
    """
    if not _distils(model):
        return [train_step_leg(STUDENT, '(a) training step', model, ctx)]
    nets = nets_of(model)
    legs = [leg for net in nets for leg in _limit_legs(net, model, ctx)]
    step = 'cohort' if any(net.role == MEMBER for net in nets) else 'distillation'
    legs.append(train_step_leg('distill', f'(c) {step} step', model, ctx, role=STEP))
    return legs + reference_legs(model, ctx, sample)


# ---------------------------------------------------------------------- timing
@dataclass
class LegResult:
    """Times (seconds, one per timed batch) and peak memory of a leg."""
    name: str
    label: str
    role: str
    times: List[float]
    peak_memory: Optional[int] = None
    reference_for: Optional[str] = None

    @property
    def median(self) -> float:
        """Median of the times."""
        return statistics.median(self.times)

    @property
    def iqr(self) -> float:
        """Interquartile range of the times (0 for fewer than two)."""
        if len(self.times) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.times, n=4, method='inclusive')
        return q3 - q1


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_legs(legs: Sequence[Leg], batches: Sequence[dict], warmup: int, iters: int,
              device: str = 'cpu',
              progress: Optional[Callable[[int, int, int, Dict[str, float]], None]] = None,
              clock: Callable[[], float] = time.perf_counter) -> List[LegResult]:
    """Run every leg on each batch, round-robin, and time the calls.

    On batch ``i`` the legs run in their order rotated by ``i``; the first
    ``warmup`` batches are not timed. Batches are reused cyclically.

    Args:
        legs: The legs.
        batches: Raw batches from a dataloader.
        warmup: Untimed rounds first.
        iters: Timed rounds.
        device: Synchronised around each call when it is CUDA.
        progress: Called after each round with (done, total, warmup,
            seconds of each leg in that round).
        clock: Returns seconds (one of :data:`CLOCKS`).

    Returns:
        One :class:`LegResult` per leg, ``times[k]`` on the same batch for all.
    """
    if not batches:
        raise ValueError('time_legs needs at least one batch.')
    results = [LegResult(leg.name, leg.label, leg.role, [], reference_for=leg.reference_for)
               for leg in legs]
    total = warmup + iters
    for i in range(total):
        batch = batches[i % len(batches)]
        shift = i % len(legs)
        last = {}
        for index in list(range(shift, len(legs))) + list(range(shift)):
            leg = legs[index]
            prepared = leg.prepare(batch)
            _sync(device)
            start = clock()
            leg.run(prepared)
            _sync(device)
            elapsed = clock() - start
            last[leg.name] = elapsed
            if i >= warmup:
                results[index].times.append(elapsed)
        if progress is not None:
            progress(i + 1, total, warmup, {leg.name: last[leg.name] for leg in legs})
    return results


# ---------------------------------------------------------------------- report
def count_parameters(model: nn.Module) -> Dict[str, int]:
    """Parameters of the nets and what distillation adds.

    Args:
        model: The model measured.

    Returns:
        ``student`` / ``members`` (whichever exist), ``teachers`` (those
        that run in a step, if any), ``connectors`` (a distiller's
        ``connectors``; 0 for a cohort), and ``extra_trainable``: trainable
        parameters outside the student(s), e.g. connectors plus learnable
        parts of losses. A plain model gives ``model`` only.
    """

    def count(module: nn.Module, trainable: bool = False) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)

    if not _distils(model):
        return dict(model=count(model))
    counts: Dict[str, int] = {}
    own = 0
    for role, key in ((MEMBER, 'members'), (STUDENT, 'student')):
        nets = nets_of(model, role)
        if nets:
            counts[key] = sum(count(n.module) for n in nets)
            own += sum(count(n.module, True) for n in nets)
    teachers = [n for n in nets_of(model, TEACHER) if n.runs_in_step]
    if teachers:
        counts['teachers'] = sum(count(n.module) for n in teachers)
    inner = unwrap(model)
    counts['connectors'] = count(inner.connectors) if isinstance(inner, Distiller) else 0
    counts['extra_trainable'] = count(model, True) - own
    return counts


@dataclass
class OverheadResult:
    """Everything one benchmark run measured."""
    config: str
    legs: List[LegResult]
    parameters: Dict[str, int]
    settings: Dict[str, Any] = field(default_factory=dict)

    def _of(self, role: str) -> List[LegResult]:
        return [leg for leg in self.legs if leg.role == role]

    @property
    def limit(self) -> Optional[float]:
        """Sum of the medians of the limit legs, if there is a step to compare."""
        if not self._of(STEP):
            return None
        return sum(leg.median for leg in self._of(LIMIT))

    @property
    def ratio(self) -> Optional[float]:
        """Median of the step over the limit: ``c / (a + b)``."""
        steps = self._of(STEP)
        return steps[0].median / self.limit if steps and self.limit else None

    @property
    def ratios(self) -> List[float]:
        """``c / (a + b)`` batch by batch (legs timed on the same batch)."""
        steps = self._of(STEP)
        if not steps:
            return []
        limits = [sum(t) for t in zip(*(leg.times for leg in self._of(LIMIT)))]
        return [c / lim for c, lim in zip(steps[0].times, limits)]

    def references(self) -> List[Dict[str, Any]]:
        """Each reference leg against the leg it is the reference of: the ratio
        of the medians, and batch by batch (median, quartiles)."""
        by_name = {leg.name: leg for leg in self.legs}
        found = []
        for ref in self._of(REFERENCE):
            leg = by_name.get(ref.reference_for)
            if leg is None:
                continue
            ratios = [a / b for a, b in zip(leg.times, ref.times)]
            quartiles = statistics.quantiles(ratios, n=4, method='inclusive') \
                if len(ratios) > 1 else [None, None, None]
            found.append(dict(leg=leg.name, reference=ref.name, label=leg.label,
                              reference_label=ref.label, ratio=leg.median / ref.median,
                              ratio_per_batch_median=statistics.median(ratios),
                              ratio_per_batch_iqr=[quartiles[0], quartiles[2]]))
        return found

    def to_dict(self) -> Dict[str, Any]:
        """The figures, every time included (what ``--out`` writes)."""
        ratios = self.ratios
        return dict(
            config=self.config, settings=self.settings, parameters=self.parameters,
            limit=self.limit, ratio=self.ratio,
            ratio_per_batch_median=statistics.median(ratios) if ratios else None,
            references=self.references(),
            legs=[dict(name=leg.name, label=leg.label, role=leg.role, median=leg.median,
                       iqr=leg.iqr, peak_memory=leg.peak_memory, times=leg.times,
                       reference_for=leg.reference_for)
                  for leg in self.legs])

    def format(self) -> str:
        """The report as text."""
        s = self.settings
        lines = [f'distillation overhead of {self.config}',
                 f'device {s.get("device")} ({s.get("threads")} threads), batch '
                 f'{s.get("batch_size")}, {s.get("warmup")} warm-up + {s.get("iters")} timed '
                 f'rounds (legs interleaved), {s.get("precision")}, {s.get("memory_format")}, '
                 f'{s.get("clock", "wall")} clock',
                 f'{"leg":<32}{"median":>10}{"IQR":>10}{"peak mem":>12}']

        def row(label: str, median: float, iqr: Optional[float] = None,
                memory: Optional[int] = None) -> str:
            shown_iqr = f'{iqr:.3f} s' if iqr is not None else ''
            shown_mem = f'{memory / 2**20:.1f} MiB' if memory is not None else ''
            return f'{label:<32}{median:>8.3f} s{shown_iqr:>10}{shown_mem:>12}'

        for leg in self.legs:
            lines.append(row(leg.label, leg.median, leg.iqr, leg.peak_memory))
        if self.ratio is not None:
            letters = [leg.label.split(' ', 1)[0].strip('()') for leg in self._of(LIMIT)]
            names = ' + '.join(
                f'{letter}[{leg.name.split(":", 1)[-1]}]' if letters.count(letter) > 1 else letter
                for letter, leg in zip(letters, self._of(LIMIT)))
            lines.append(row(f'limit {names}', self.limit))
            ratios = self.ratios
            spread = ''
            if len(ratios) > 1:
                q1, _, q3 = statistics.quantiles(ratios, n=4, method='inclusive')
                spread = f'; per batch: median {statistics.median(ratios):.3f}, ' \
                         f'IQR {q1:.3f}-{q3:.3f}'
            lines.append(f'ratio c / ({names}) = {self.ratio:.3f}{spread}')
        for ref in self.references():
            low, high = ref['ratio_per_batch_iqr']
            spread = '' if low is None else f', IQR {low:.3f}-{high:.3f}'
            lines.append(f'{ref["label"]} / {ref["reference_label"]} = {ref["ratio"]:.3f}; '
                         f'per batch: median {ref["ratio_per_batch_median"]:.3f}{spread}')
        shown = ', '.join(f'{k} {v:,}' for k, v in self.parameters.items())
        lines.append(f'parameters: {shown}')
        return '\n'.join(lines)
