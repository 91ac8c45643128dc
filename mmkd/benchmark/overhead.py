"""How much a distillation step costs above its limit.

A distillation step cannot cost less than one training step of the student
plus one inference pass of each teacher on the same batch (for a cohort of
nets that learn from each other: the sum of the members' training steps).
This module times, in one run and on the same batches:

* the *limit legs*: (a) the student's training step alone (a copy of the
  student with its own optimizer: forward, loss, backward, step), (b) each
  teacher's inference (``no_grad``, eval mode);
* the *step leg*: (c) the model's own ``train_step``.

Legs run round-robin on each batch, in an order that rotates from batch to
batch, so that noise from other processes reaches every leg alike. The
result holds the median and interquartile range of each leg, the ratio
``c / (a + b)``, the peak memory of each leg, and parameter counts
(connectors are the learnable parts a method adds).

Models plug in through *limit builders*: functions that return the legs of
a model, or ``None`` when they do not know it. Those for plain models,
teacher-student distillers (``.student`` plus ``.teacher`` or
``.teachers``) and cohorts (``.members``) are built in; register others
with :func:`register_limit_builder`.
"""
import copy
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from mmengine.config import Config, ConfigDict
from mmengine.device import get_device
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmengine.runner.amp import autocast
from torch import nn

from mmkd.engine.optimizers import mixed_precision_cfg
from mmkd.registry import MODELS
from .memory import peak_memory_of

LIMIT = 'limit'
STEP = 'step'


@dataclass
class Leg:
    """One thing timed on each batch.

    Args:
        name: Short key (``'student'``, ``'teacher'``, ``'distill'``...).
        label: What the report prints.
        role: ``'limit'`` (summed into the limit) or ``'step'`` (the
            measured step).
        run: Timed call; receives what ``prepare`` returned.
        prepare: Untimed call on the raw batch before each ``run``; by
            default a deep copy, since steps may change their batch.
    """
    name: str
    label: str
    role: str
    run: Callable[[Any], Any]
    prepare: Callable[[dict], Any] = copy.deepcopy


@dataclass
class BenchContext:
    """What limit builders need besides the model.

    Args:
        optim_wrapper: Optim wrapper config for every training leg (AMP
            already applied when asked for).
        device: The device the model is on.
        amp_dtype: Autocast dtype of inference legs, or ``None``.
    """
    optim_wrapper: dict
    device: str = 'cpu'
    amp_dtype: Optional[torch.dtype] = None

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return autocast(device_type=self.device.split(':')[0], dtype=self.amp_dtype)


def train_step_leg(name: str, label: str, net: nn.Module, ctx: BenchContext,
                   role: str = LIMIT) -> Leg:
    """A leg that runs ``net.train_step`` with its own optim wrapper."""
    net.train()
    optim_wrapper = build_optim_wrapper(net, copy.deepcopy(ctx.optim_wrapper))
    return Leg(name, label, role, lambda batch: net.train_step(batch, optim_wrapper))


def inference_leg(name: str, label: str, net: nn.Module, preprocessor: nn.Module,
                  ctx: BenchContext) -> Leg:
    """A leg that runs ``net`` in eval mode under ``no_grad`` on preprocessed
    inputs (preprocessing is untimed: the step does it once for all nets)."""
    net.eval()

    def prepare(batch: dict) -> dict:
        with torch.no_grad():
            return preprocessor(copy.deepcopy(batch), True)

    def run(data: dict) -> None:
        with torch.no_grad(), ctx.autocast():
            net(data['inputs'], data.get('data_samples'), mode='tensor')

    return Leg(name, label, LIMIT, run, prepare)


def teachers_of(model: nn.Module) -> Dict[str, nn.Module]:
    """The teachers a distiller runs in a step, by name.

    Reads ``model.teachers`` (name -> net) or ``model.teacher``; where the
    model has ``teacher_groups()``, keeps the teachers that have records
    (the others never run).
    """
    nets = getattr(model, 'teachers', None)
    if not isinstance(nets, (dict, nn.ModuleDict)):
        teacher = getattr(model, 'teacher', None)
        nets = {'teacher': teacher} if isinstance(teacher, nn.Module) else {}
    nets = dict(nets)
    if hasattr(model, 'teacher_groups'):
        running = model.teacher_groups()
        nets = {name: net for name, net in nets.items() if name in running}
    return nets


def members_of(model: nn.Module) -> Dict[str, nn.Module]:
    """The nets of a cohort (``model.members``: name -> net, or a list)."""
    members = getattr(model, 'members', None)
    if isinstance(members, (dict, nn.ModuleDict)):
        return dict(members)
    if isinstance(members, (list, tuple, nn.ModuleList)):
        return {str(i): m for i, m in enumerate(members)}
    return {}


def plain_legs(model: nn.Module, ctx: BenchContext) -> List[Leg]:
    """A model that does not distil: its own training step, (a) only."""
    return [train_step_leg('student', '(a) training step', model, ctx)]


def teacher_student_legs(model: nn.Module, ctx: BenchContext) -> Optional[List[Leg]]:
    """(a) a copy of ``model.student``, (b) each teacher, (c) the step."""
    student = getattr(model, 'student', None)
    if not isinstance(student, nn.Module):
        return None
    legs = [train_step_leg('student', '(a) student train step', copy.deepcopy(student), ctx)]
    for name, teacher in teachers_of(model).items():
        key = 'teacher' if name == 'teacher' else f'teacher:{name}'
        legs.append(inference_leg(key, f'(b) {name} inference', teacher,
                                  model.data_preprocessor, ctx))
    legs.append(train_step_leg('distill', '(c) distillation step', model, ctx, role=STEP))
    return legs


def member_optim_wrapper(optim_wrapper: dict, name: str) -> dict:
    """The optim wrapper config of one cohort member trained alone: the
    shared settings plus its ``members.<name>`` overrides, without the
    cohort's ``constructor``."""
    cfg = ConfigDict(copy.deepcopy(dict(optim_wrapper)))
    cfg.pop('constructor', None)
    overrides = dict(cfg.pop('members', None) or {})
    if name in overrides:
        cfg.merge_from_dict(copy.deepcopy(dict(overrides[name])))
    return cfg.to_dict()


def cohort_legs(model: nn.Module, ctx: BenchContext) -> Optional[List[Leg]]:
    """(a) a copy of each member trained alone, (c) the cohort's step."""
    members = members_of(model)
    if not members:
        return None
    legs = []
    for name, net in members.items():
        alone = BenchContext(member_optim_wrapper(ctx.optim_wrapper, name), ctx.device,
                             ctx.amp_dtype)
        legs.append(train_step_leg(f'member:{name}', f'(a) {name} train step',
                                   copy.deepcopy(net), alone))
    legs.append(train_step_leg('distill', '(c) cohort step', model, ctx, role=STEP))
    return legs


LimitBuilder = Callable[[nn.Module, BenchContext], Optional[List[Leg]]]
LIMIT_BUILDERS: List[LimitBuilder] = [cohort_legs, teacher_student_legs]


def register_limit_builder(builder: LimitBuilder) -> LimitBuilder:
    """Add a limit builder, tried before the built-in ones.

    Example:
        >>> @register_limit_builder
        ... def self_distiller_legs(model, ctx):
        ...     if not isinstance(model, MySelfDistiller):
        ...         return None
        ...     return [train_step_leg('student', '(a) plain step', copy.deepcopy(model.net), ctx),
        ...             train_step_leg('distill', '(c) step', model, ctx, role=STEP)]
    """
    LIMIT_BUILDERS.insert(0, builder)
    return builder


def legs_for(model: nn.Module, ctx: BenchContext) -> List[Leg]:
    """The legs of ``model``: from the first limit builder that knows it."""
    for builder in LIMIT_BUILDERS:
        legs = builder(model, ctx)
        if legs is not None:
            return legs
    return plain_legs(model, ctx)


# ---------------------------------------------------------------------- timing
@dataclass
class LegResult:
    """Times (seconds, one per timed batch) and peak memory of a leg."""
    name: str
    label: str
    role: str
    times: List[float]
    peak_memory: Optional[int] = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def iqr(self) -> float:
        if len(self.times) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.times, n=4, method='inclusive')
        return q3 - q1


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _progress_printer(stream=sys.stderr) -> Callable[[int, int, int, Dict[str, float]], None]:
    """Prints one progress line (rewritten in place on a terminal)."""
    tty = stream.isatty()

    def show(done: int, total: int, warmup: int, last: Dict[str, float]) -> None:
        phase = 'warm-up' if done <= warmup else 'timed'
        count = done if done <= warmup else done - warmup
        of = warmup if done <= warmup else total - warmup
        legs = '  '.join(f'{k} {v:.3f}s' for k, v in last.items())
        line = f'[overhead] {phase} {count}/{of}  {legs}'
        if tty:
            stream.write('\r' + line.ljust(100) + ('\n' if done == total else ''))
        elif done == total or done == warmup or count % max(1, of // 5) == 0:
            stream.write(line + '\n')
        stream.flush()

    return show


def time_legs(legs: Sequence[Leg], batches: Sequence[dict], warmup: int, iters: int,
              device: str = 'cpu',
              progress: Optional[Callable[[int, int, int, Dict[str, float]], None]] = None
              ) -> List[LegResult]:
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

    Returns:
        One :class:`LegResult` per leg, ``times[k]`` on the same batch for all.
    """
    if not batches:
        raise ValueError('time_legs needs at least one batch.')
    results = [LegResult(leg.name, leg.label, leg.role, []) for leg in legs]
    total = warmup + iters
    for i in range(total):
        batch = batches[i % len(batches)]
        shift = i % len(legs)
        last = {}
        for index in list(range(shift, len(legs))) + list(range(shift)):
            leg = legs[index]
            prepared = leg.prepare(batch)
            _sync(device)
            start = time.perf_counter()
            leg.run(prepared)
            _sync(device)
            elapsed = time.perf_counter() - start
            last[leg.name] = elapsed
            if i >= warmup:
                results[index].times.append(elapsed)
        if progress is not None:
            progress(i + 1, total, warmup, {leg.name: last[leg.name] for leg in legs})
    return results


# ---------------------------------------------------------------------- report
def count_parameters(model: nn.Module) -> Dict[str, int]:
    """Parameters of the nets and what distillation adds.

    Returns:
        ``student`` / ``teachers`` / ``members`` (whichever exist),
        ``connectors`` (the model's ``connectors`` module), and
        ``extra_trainable``: trainable parameters outside the student(s),
        e.g. connectors plus learnable parts of losses. A plain model gives
        ``model`` only.
    """

    def count(module: nn.Module, trainable: bool = False) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)

    members = members_of(model)
    student = getattr(model, 'student', None)
    if not members and not isinstance(student, nn.Module):
        return dict(model=count(model))
    counts: Dict[str, int] = {}
    if members:
        counts['members'] = sum(count(m) for m in members.values())
        own = sum(count(m, True) for m in members.values())
    else:
        counts['student'] = count(student)
        own = count(student, True)
    teachers = teachers_of(model)
    if teachers:
        counts['teachers'] = sum(count(t) for t in teachers.values())
    connectors = getattr(model, 'connectors', None)
    counts['connectors'] = count(connectors) if isinstance(connectors, nn.Module) else 0
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

    def to_dict(self) -> Dict[str, Any]:
        ratios = self.ratios
        return dict(
            config=self.config, settings=self.settings, parameters=self.parameters,
            limit=self.limit, ratio=self.ratio,
            ratio_per_batch_median=statistics.median(ratios) if ratios else None,
            legs=[dict(name=leg.name, label=leg.label, role=leg.role, median=leg.median,
                       iqr=leg.iqr, peak_memory=leg.peak_memory, times=leg.times)
                  for leg in self.legs])

    def format(self) -> str:
        """The report as text."""
        s = self.settings
        lines = [f'distillation overhead of {self.config}',
                 f'device {s.get("device")} ({s.get("threads")} threads), batch '
                 f'{s.get("batch_size")}, {s.get("warmup")} warm-up + {s.get("iters")} timed '
                 f'rounds (legs interleaved), {s.get("precision")}, {s.get("memory_format")}',
                 f'{"leg":<28}{"median":>10}{"IQR":>10}{"peak mem":>12}']

        def row(label: str, median: float, iqr: Optional[float] = None,
                memory: Optional[int] = None) -> str:
            shown_iqr = f'{iqr:.3f} s' if iqr is not None else ''
            shown_mem = f'{memory / 2**20:.1f} MiB' if memory is not None else ''
            return f'{label:<28}{median:>8.3f} s{shown_iqr:>10}{shown_mem:>12}'

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
        shown = ', '.join(f'{k} {v:,}' for k, v in self.parameters.items())
        lines.append(f'parameters: {shown}')
        return '\n'.join(lines)


# ---------------------------------------------------------------------- driver
def load_batches(cfg: Config, count: int, batch_size: Optional[int] = None) -> List[dict]:
    """The first ``count`` batches of the config's training dataloader
    (built in this process, shuffled with seed 0)."""
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    loader_cfg.update(num_workers=0, persistent_workers=False)
    if batch_size is not None:
        loader_cfg['batch_size'] = batch_size
    batches = []
    for batch in Runner.build_dataloader(loader_cfg, seed=0):
        batches.append(batch)
        if len(batches) == count:
            break
    if not batches:
        raise ValueError('the training dataloader of the config gave no batch.')
    return batches


def build_model(cfg: Config) -> nn.Module:
    """The config's model, built as the Runner builds it (top-level data
    preprocessor merged in, weights initialised)."""
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    model = MODELS.build(model_cfg)
    if hasattr(model, 'init_weights'):
        model.init_weights()
    return model


def measure_overhead(cfg: Union[str, Config], batch_size: Optional[int] = None,
                     warmup: int = 3, iters: int = 20, amp: bool = False,
                     channels_last: bool = False, device: Optional[str] = None,
                     max_batches: int = 32, memory: bool = True, threads: Optional[int] = None,
                     progress: Union[bool, Callable] = True) -> OverheadResult:
    """Measure the overhead of a config's training step over its limit.

    Args:
        cfg: Config (or its path, ``mmkd::`` paths included).
        batch_size: Overrides the training dataloader's.
        warmup: Untimed rounds.
        iters: Timed rounds.
        amp: Mixed precision: the config's optim wrapper through
            :func:`~mmkd.engine.mixed_precision_cfg` (bf16 autocast on CPU);
            inference legs autocast alike.
        channels_last: Nets (and so their activations) in channels-last.
        device: Default: the device MMEngine would train on.
        max_batches: Distinct batches loaded (reused cyclically).
        memory: Also measure each leg's peak memory (one untimed call each).
        threads: ``torch.set_num_threads`` for the run (default: as set).
        progress: Print progress to stderr (or a callable, see
            :func:`time_legs`).

    Returns:
        :class:`OverheadResult`; ``print(result.format())`` shows it.

    Example:
        >>> result = measure_overhead('configs/kd/kd_resnet56_resnet8_fashionmnist.py', iters=20)
        >>> print(result.format())
    """
    from mmkd.distillers import load_config
    from mmkd.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    path = cfg if isinstance(cfg, str) else (cfg.filename or '<config>')
    cfg = load_config(cfg) if isinstance(cfg, str) else cfg
    device = device or get_device()
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmkd')):
        batches = load_batches(cfg, min(max_batches, warmup + iters), batch_size)
        model = build_model(cfg).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optim_cfg = copy.deepcopy(cfg.optim_wrapper.to_dict() if hasattr(
            cfg.optim_wrapper, 'to_dict') else dict(cfg.optim_wrapper))
        amp_dtype = None
        if amp:
            optim_cfg = mixed_precision_cfg(optim_cfg, device.split(':')[0])
            amp_dtype = getattr(torch, str(optim_cfg.get('dtype') or 'float16'))
        ctx = BenchContext(optim_cfg, device, amp_dtype)
        legs = legs_for(model, ctx)
        show = _progress_printer() if progress is True else (progress or None)
        results = time_legs(legs, batches, warmup, iters, device, show)
        if memory:
            for leg, result in zip(legs, results):
                prepared = leg.prepare(batches[0])
                result.peak_memory = peak_memory_of(lambda: leg.run(prepared), device)
    first = batches[0]['inputs']
    size = len(first) if isinstance(first, (list, tuple)) else first.shape[0]
    settings = dict(device=device, threads=torch.get_num_threads(), batch_size=size,
                    warmup=warmup, iters=iters,
                    precision=f'autocast {amp_dtype}'.replace('torch.', '') if amp else 'fp32',
                    memory_format='channels_last' if channels_last else 'contiguous')
    return OverheadResult(path, results, count_parameters(model), settings)
