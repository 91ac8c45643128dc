"""How much a distillation step costs above its limit.

A distillation step cannot cost less than one training step of the student
plus one inference pass of each teacher on the same batch (for a cohort of
nets that learn from each other: the sum of the members' training steps).
This module times, on the same batches:

* the *limit legs*: (a) the student's training step alone (a copy of the
  student with its own optimizer: forward, loss, backward, step), (b) each
  teacher's inference (``no_grad``, eval mode);
* the *step leg*: (c) the model's own ``train_step``.

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
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.runner.amp import autocast
from torch import nn

from mmkd.distillers import MEMBER, STUDENT, TEACHER, DistillationModel, Distiller, Net, nets_of
from mmkd.utils import unwrap

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
                   role: str = LIMIT) -> Leg:
    """A leg that runs ``net.train_step`` with its own optim wrapper.

    Args:
        name: The leg's key.
        label: The leg's label.
        net: A model with ``train_step`` (set to train mode here).
        ctx: Gives the optim wrapper config.
        role: ``'limit'`` or ``'step'``.

    Returns:
        The leg.
    """
    net.train()
    optim_wrapper = build_optim_wrapper(net, copy.deepcopy(ctx.optim_wrapper))
    return Leg(name, label, role, lambda batch: net.train_step(batch, optim_wrapper))


def inference_leg(name: str, label: str, net: nn.Module, preprocessor: nn.Module,
                  ctx: BenchContext) -> Leg:
    """A leg that runs ``net`` in eval mode under ``no_grad`` on preprocessed
    inputs (preprocessing is untimed: the step does it once for all nets).

    Args:
        name: The leg's key.
        label: The leg's label.
        net: The network (set to eval mode here); called with
            ``mode='tensor'``.
        preprocessor: The data preprocessor of the model the net is part of.
        ctx: Gives the autocast of AMP runs.

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

    return Leg(name, label, LIMIT, run, prepare)


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


def legs_for(model: nn.Module, ctx: BenchContext) -> List[Leg]:
    """The legs of ``model``, from :func:`~mmkd.distillers.nets_of`.

    A plain model gives its own training step, (a) only. A distiller gives
    (a) a copy of each student trained alone, (b) the inference of each
    teacher that runs in a step (one with records) and (c) the model's own
    step; a cohort gives (a) a copy of each member trained alone (with its
    ``members.<name>`` optimizer overrides) and (c) the cohort's step.

    Args:
        model: The model, on its device.
        ctx: Optim wrapper config, device and AMP of the run.

    Returns:
        The limit legs, then the step leg if there is one.
    """
    if not _distils(model):
        return [train_step_leg(STUDENT, '(a) training step', model, ctx)]
    nets = nets_of(model)
    legs = [leg for net in nets for leg in _limit_legs(net, model, ctx)]
    step = 'cohort' if any(net.role == MEMBER for net in nets) else 'distillation'
    legs.append(train_step_leg('distill', f'(c) {step} step', model, ctx, role=STEP))
    return legs


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

    def to_dict(self) -> Dict[str, Any]:
        """The figures, every time included (what ``--out`` writes)."""
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
