"""FLOPs of the overhead benchmark's legs: does a step's time follow its compute?

:mod:`mmkd.benchmark.overhead` times (a) each student's (or cohort member's)
training step alone, (b) each teacher's inference and (c) the model's own
``train_step``, and reports ``c / (a + b)``. This module counts the
arithmetic of the same legs on one batch with MMEngine's
:class:`~mmengine.analysis.FlopAnalyzer` (what
``mmengine.analysis.get_model_complexity_info`` reports: one multiply-add
is one FLOP; convolutions, matrix products, normalisations, pooling and
upsampling are counted, element-wise ops are not), so that the FLOP ratio
can be put beside the time ratio. Where the two are close, the step costs
what its arithmetic costs; where the time ratio is well above, the step
spends its time on work the FLOP count does not see, and the op census
(:func:`census_legs`) says how much of that work there is.

A trace sees forward passes only. The backward pass of a trained part is
taken as twice its forward (forward + backward ~ 3 x forward,
:data:`BACKWARD_FACTOR`), the usual estimate for convolutions and matrix
products:

* (a) ``3 x`` the forward of each trained net's own ``train_step``;
* (b) the forward of each teacher that runs in a step, in eval mode under
  ``no_grad``, as :func:`~mmkd.benchmark.inference_leg` runs it;
* (c) the forward of the model's ``train_step``, traced as it runs (the
  optimizer's update left out): the part computed without grad (the
  teachers, as far as their records need; a cohort's recomputations) once,
  the rest three times.

What runs without grad is observed, not assumed: every call of a module of
the model is seen with its grad mode, and a module's FLOPs are split between
the modes in proportion to its calls (its calls on one batch have one
shape). The forward of (c) is also split by where it runs: the trained nets
(one pass each, as in (a), and any pass beyond that), the method's own
modules (every module of the model that is no net: connectors, losses with
layers, auxiliary classifiers) and what runs in no module. Each module's
outputs are kept alive in the trace, so work whose result is discarded
still counts.

Nets are built as the overhead benchmark builds them
(:func:`~mmkd.distillers.build_model_from_config`, seed 0, the legs from
:func:`~mmkd.distillers.nets_of`); FLOPs do not depend on weights, so a
teacher whose checkpoint is not on this machine is built untrained. The
batch is random: ``batch_size`` images of the dataset's shape with values in
0..255, as the data preprocessor receives them, and a label each. Only
classifiers (mmpretrain data samples) are supported. The driver is
``tools/benchmark/flops.py``.

Example:
    >>> legs = count_legs(load_config('configs/kd/kd_resnet56_resnet8_fashionmnist.py'))
    >>> round(legs.ratio, 2)  # c / (a + b) in FLOPs
    1.0
"""
import copy
import os.path as osp
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config
from mmengine.optim import OptimWrapperDict, build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from mmkd.distillers import (
    MEMBER,
    STUDENT,
    TEACHER,
    Distiller,
    build_model_from_config,
    nets_of,
)
from mmkd.distillers.fast_teacher import teacher_records
from mmkd.distillers.teacher import indexed_tensors
from mmkd.utils import register_all_modules, unwrap

from .overhead import LIMIT, STEP, BenchContext, _distils, legs_for, member_optim_wrapper

#: Forward + backward of a trained part, in forward passes.
BACKWARD_FACTOR = 3
#: Image shape (C, H, W) of the datasets the zoo's configs train on, by dataset type.
DATASET_SHAPES = {'FashionMNIST': (1, 28, 28), 'MNIST': (1, 28, 28), 'CIFAR10': (3, 32, 32),
                  'CIFAR100': (3, 32, 32)}
#: The markers around the generated tables in a Markdown page (``--out`` an existing page).
MARK_START = '<!-- flops:start -->'
MARK_END = '<!-- flops:end -->'
#: Where a traced call's module names start (the traced module's child).
ROOT = 'model'


# ---------------------------------------------------------------------- counting one call
class _Traced(nn.Module):
    """``call(inputs)`` as a module that owns ``model``: its parameters are then
    the trace's inputs and its submodules name the counts. With ``observe``,
    every call of one of its modules is counted by grad mode, and every
    module's outputs are outputs of the trace (no computed value is dropped
    as dead code)."""

    def __init__(self, model: nn.Module, call: Callable[[torch.Tensor], Any], observe: bool):
        super().__init__()
        setattr(self, ROOT, model)
        self._call = call
        self._observe = observe
        self.calls: Dict[str, List[int]] = {}

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        kept: List[torch.Tensor] = []
        self.calls = defaultdict(lambda: [0, 0])  # name -> [with grad, without]

        def seen(name: str):
            def pre_hook(_module, _args) -> None:
                self.calls[name][0 if torch.is_grad_enabled() else 1] += 1
            return pre_hook

        def keep(_module, _args, output) -> None:
            kept.extend(t for _, t in indexed_tensors(output))

        handles = []
        if self._observe:
            for path, module in getattr(self, ROOT).named_modules():
                handles.append(module.register_forward_pre_hook(seen(_name(path))))
                handles.append(module.register_forward_hook(keep))
        try:
            result = self._call(inputs)
        finally:
            for handle in handles:
                handle.remove()
        outputs = tuple(t for _, t in indexed_tensors(result)) + tuple(kept)
        return outputs or (inputs.sum(), )


def _name(path: str) -> str:
    """A module's name in the counts, from its path in the traced model."""
    return f'{ROOT}.{path}' if path else ROOT


@dataclass
class Trace:
    """MMEngine's FLOP analysis of one call, and its modules' calls by grad mode.

    Args:
        analyzer: The analysis, already run (``by_module()``: FLOPs by
            module name, ``'model.<path>'``).
        calls: Module name -> [calls with grad, calls without].
        children: Module name -> the names of its direct children.
    """
    analyzer: FlopAnalyzer
    calls: Dict[str, List[int]]
    children: Dict[str, List[str]]

    def total(self) -> int:
        """FLOPs of the whole call."""
        return self.analyzer.total()

    def of(self, path: str) -> int:
        """FLOPs of the module at ``path`` in the traced model (``''``: all of it)."""
        return self.analyzer.by_module()[_name(path)]

    def without_grad(self) -> int:
        """FLOPs computed in the model's modules while grad was off: each
        module's own FLOPs (not its children's) times the share of its calls
        made without grad. Work in no module call (a method other than
        ``forward`` of the traced model itself) counts as with grad."""
        by_module = self.analyzer.by_module()
        total = 0.0
        for name, (with_grad, without) in self.calls.items():
            if without:
                own = by_module[name] - sum(by_module[c] for c in self.children.get(name, ()))
                total += own * without / (with_grad + without)
        return int(round(total))


def trace(call: Callable[[torch.Tensor], Any], inputs: torch.Tensor,
          model: Optional[nn.Module] = None, observe: bool = True) -> Trace:
    """Trace one call and count its FLOPs.

    Args:
        call: Receives ``inputs``; its tensors (nested in lists and dicts)
            are outputs of the trace.
        inputs: The one traced input.
        model: The module whose parameters and submodules ``call`` uses
            (``None``: none are named, e.g. for a frozen teacher).
        observe: Watch the modules of ``model`` (grad mode of every call,
            outputs kept). Leave it off for a frozen teacher: a hook on its
            modules turns its folded BatchNorms back on
            (:mod:`mmkd.distillers.fast_teacher`).

    Returns:
        The :class:`Trace`.
    """
    model = nn.Module() if model is None else model
    traced = _Traced(model, call, observe)
    analyzer = FlopAnalyzer(traced, (inputs, ))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    analyzer.total()
    children = {_name(path): [_name(f'{path}.{c}' if path else c) for c, _ in m.named_children()]
                for path, m in model.named_modules()}
    return Trace(analyzer, dict(traced.calls), children)


def count_flops(model: nn.Module, inputs: torch.Tensor) -> int:
    """FLOPs of ``model(inputs)`` (one multiply-add = one FLOP), as
    ``mmengine.analysis.get_model_complexity_info`` counts them."""
    return trace(model, inputs, model).total()


class OpCensus(TorchDispatchMode):
    """Counts the ATen ops that run while it is on (forward, backward and
    optimizer alike) and the bytes their outputs hold, in all and by op
    (``'mul'``, ``'convolution_backward'``, ...); views (which write nothing)
    are left out, in-place ops count the tensor they write."""

    def __init__(self):
        super().__init__()
        self.ops = 0
        self.bytes = 0
        self.ops_by_op: Counter = Counter()
        self.bytes_by_op: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not getattr(func, 'is_view', False):
            written = sum(t.numel() * t.element_size() for t in tree_flatten(out)[0]
                          if isinstance(t, torch.Tensor))
            self.ops += 1
            self.bytes += written
            name = func.overloadpacket.__name__
            self.ops_by_op[name] += 1
            self.bytes_by_op[name] += written
        return out


# ---------------------------------------------------------------------- the inputs
def input_shape(cfg: Config) -> Tuple[int, int, int]:
    """(C, H, W) of the config's training images: its dataset's shape
    (:data:`DATASET_SHAPES`), else the model's ``dry_run_shape``; the data
    preprocessor's mean must have C values."""
    dataset = cfg.get('train_dataloader', {}).get('dataset', {})
    kind = str(dataset.get('type', '')).split('.')[-1]
    shape = DATASET_SHAPES.get(kind) or cfg.model.get('dry_run_shape')
    if shape is None:
        raise ValueError(f'no image shape known for dataset {kind!r}; give one (C, H, W).')
    mean = (cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {}).get('mean')
    if mean is not None and len(mean) != shape[0]:
        raise ValueError(f'the data preprocessor normalises {len(mean)} channel(s) but dataset '
                         f'{kind!r} has images of shape {tuple(shape)}; give the shape.')
    return tuple(int(s) for s in shape)


def random_batch(batch_size: int, shape: Sequence[int], num_classes: int = 10,
                 seed: int = 0) -> dict:
    """A raw classification batch: uint8 images in 0..255 as a dataloader
    gives them, labels ``i % num_classes`` and ``sample_idx`` ``i``."""
    from mmpretrain.structures import DataSample
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch_size, *shape), dtype=torch.uint8,
                           generator=generator)
    samples = [DataSample(metainfo=dict(sample_idx=i)).set_gt_label(i % num_classes)
               for i in range(batch_size)]
    return dict(inputs=images, data_samples=samples)


def _without_missing_checkpoints(cfg: Config) -> List[str]:
    """Teachers whose checkpoint file is missing get ``checkpoint=None``; their names."""
    model = cfg.model
    entries = {'teacher': model['teacher']} if model.get('teacher') else \
        dict(model.get('teachers') or {})
    missing = []
    for name, entry in entries.items():
        path = entry.get('checkpoint') if isinstance(entry, dict) else None
        if isinstance(path, str) and '://' not in path and not osp.isfile(path):
            entry['checkpoint'] = None
            missing.append(name)
    return missing


def build_model(cfg: Config) -> Tuple[nn.Module, List[str]]:
    """The config's model as the overhead benchmark builds it (seed 0, in the
    config's default scope), and the teachers built untrained because their
    checkpoint is missing."""
    register_all_modules(init_default_scope=False)
    cfg = copy.deepcopy(cfg)
    untrained = _without_missing_checkpoints(cfg)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*checkpoint=None.*')
        return build_model_from_config(cfg), untrained


def optim_wrapper_cfg(cfg: Config) -> dict:
    """The config's ``optim_wrapper`` as a plain dict."""
    optim = cfg.optim_wrapper
    return copy.deepcopy(optim.to_dict() if hasattr(optim, 'to_dict') else dict(optim))


# ---------------------------------------------------------------------- the legs
def _no_update(optim_wrapper):
    """``optim_wrapper`` (or each wrapper of a dict) with ``update_params``
    doing nothing: a traced step runs its forward only."""
    wrappers = optim_wrapper.values() if isinstance(optim_wrapper, OptimWrapperDict) else \
        [optim_wrapper]
    for wrapper in wrappers:
        wrapper.update_params = lambda *args, **kwargs: None
    return optim_wrapper


def _train_step_call(model: nn.Module, optim_wrapper: dict, batch: dict
                     ) -> Callable[[torch.Tensor], Any]:
    """``model.train_step`` on ``batch`` with the traced images, no update."""
    model.train()
    wrapper = _no_update(build_optim_wrapper(model, copy.deepcopy(optim_wrapper)))

    def call(images: torch.Tensor):
        return model.train_step(dict(copy.deepcopy(batch), inputs=images), wrapper)

    return call


def _own_modules(model: nn.Module, nets: Sequence[nn.Module]) -> List[str]:
    """Paths of the model's modules that are no net and hold none: its
    children, or the entries of a child that is a ``ModuleDict`` / ``ModuleList``."""
    held = {id(m) for net in nets for m in net.modules()}
    found = []
    for name, child in model.named_children():
        if any(id(m) in held for m in child.modules()):
            continue
        if isinstance(child, (nn.ModuleDict, nn.ModuleList)):
            found += [f'{name}.{sub}' for sub, _ in child.named_children()]
        else:
            found.append(name)
    return found


@dataclass
class LegFlops:
    """FLOPs of one config's legs on one batch, forward passes (the legs
    follow as the module docstring says).

    Args:
        config: What was counted (a path, with overrides).
        batch_size: Images in the batch.
        shape: (C, H, W) of an image.
        trained: Each trained net's ``train_step`` alone, by net.
        teachers: Each running teacher's inference, by teacher.
        step: The model's ``train_step``.
        no_grad: The part of ``step`` computed without grad (the teachers as
            far as their records need, and whatever ran under ``no_grad``).
        repeated: Forward of a trained net in ``step`` beyond its one pass,
            by net (a cohort's recomputations).
        own: The method's own modules' part of ``step``, by module path.
        outside: The part of ``step`` in no net and no module of the
            method (and not the teachers).
        census: ATen ops and bytes they write in one real call of each leg
            (``'a'``, ``'b'``, ``'c'``: ``(ops, bytes)``) and the ops and bytes
            of (c) beyond (a) and (b) by op, from :func:`census_legs`; empty if
            not taken.
        untrained: Teachers built untrained (checkpoint missing).
    """
    config: str
    batch_size: int
    shape: Tuple[int, ...]
    trained: Dict[str, int]
    teachers: Dict[str, int]
    step: int
    no_grad: int = 0
    repeated: Dict[str, int] = field(default_factory=dict)
    own: Dict[str, int] = field(default_factory=dict)
    outside: int = 0
    census: Dict[str, Any] = field(default_factory=dict)
    untrained: List[str] = field(default_factory=list)

    @property
    def a(self) -> int:
        """The trained nets' steps alone: forward x 3."""
        return BACKWARD_FACTOR * sum(self.trained.values())

    @property
    def b(self) -> int:
        """The teachers' inference."""
        return sum(self.teachers.values())

    @property
    def c(self) -> int:
        """The step: its part without grad once, the rest x 3."""
        return self.no_grad + BACKWARD_FACTOR * (self.step - self.no_grad)

    @property
    def extra(self) -> int:
        """The method's own forward: own modules, repeated passes, the rest."""
        return sum(self.own.values()) + sum(self.repeated.values()) + self.outside

    @property
    def ratio(self) -> float:
        """``c / (a + b)`` in FLOPs."""
        return self.c / (self.a + self.b)

    def census_ratio(self, index: int) -> Optional[float]:
        """``c / (a + b)`` of the census's ops (``index`` 0) or bytes (1)."""
        if not self.census:
            return None
        limit = sum(self.census[k][index] for k in ('a', 'b') if k in self.census)
        return self.census['c'][index] / limit

    def to_dict(self) -> Dict[str, Any]:
        return dict(config=self.config, batch_size=self.batch_size, shape=list(self.shape),
                    trained=self.trained, teachers=self.teachers, step=self.step,
                    no_grad=self.no_grad, repeated=self.repeated, own=self.own,
                    outside=self.outside, census=self.census, untrained=self.untrained,
                    a=self.a, b=self.b, c=self.c, ratio=self.ratio)


def count_legs(cfg: Config, batch_size: Optional[int] = None,
               shape: Optional[Sequence[int]] = None, name: Optional[str] = None,
               census: bool = True) -> LegFlops:
    """Count the FLOPs of the overhead benchmark's legs of a config.

    Args:
        cfg: A distillation config (distiller, self-distiller or cohort) of a
            classifier.
        batch_size: Default: the training dataloader's.
        shape: (C, H, W) of the images; default :func:`input_shape`.
        name: What the result is called; default the config's file name.
        census: Also take the op census of the legs (:func:`census_legs`).

    Returns:
        :class:`LegFlops`.
    """
    batch_size = batch_size or cfg.train_dataloader.batch_size
    shape = tuple(shape or input_shape(cfg))
    name = name or osp.basename(cfg.filename or 'config')
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmkd')):
        model, untrained = build_model(cfg)
        if not _distils(model):
            raise ValueError(f'{name}: not a distillation model (no (c) step).')
        num_classes = (cfg.get('data_preprocessor') or {}).get('num_classes', 10)
        batch = random_batch(batch_size, shape, num_classes)
        legs = _count(model, optim_wrapper_cfg(cfg), batch)
        if census:
            legs.census = census_legs(model, optim_wrapper_cfg(cfg), batch)
    legs.config, legs.untrained = name, untrained
    return legs


def _count(model: nn.Module, optim: dict, batch: dict) -> LegFlops:
    """The FLOP counts of :func:`count_legs` (config name and untrained teachers left to it)."""
    inner = unwrap(model)
    images = batch['inputs']
    with torch.no_grad():
        prepared = inner.data_preprocessor(copy.deepcopy(batch), True)
    nets = nets_of(model)
    trained, teachers = {}, {}
    for net in nets:
        if net.role in (STUDENT, MEMBER):  # (a): a copy trained alone
            alone = copy.deepcopy(net.module)
            wrapper = optim if net.role == STUDENT else member_optim_wrapper(optim, net.name)
            trained[net.name] = trace(_train_step_call(alone, wrapper, batch), images,
                                      alone).total()
        elif net.role == TEACHER and net.runs_in_step:  # (b): inference, eval, no_grad
            teacher = net.module.eval()

            def infer(inputs: torch.Tensor, teacher: nn.Module = teacher):
                with torch.no_grad():
                    return teacher(inputs, prepared.get('data_samples'), mode='tensor')

            teachers[net.name] = trace(infer, prepared['inputs'], observe=False).total()
    # (c): the model's own step, and the teachers' part of it (not modules of the model).
    step = trace(_train_step_call(model, optim, batch), images, model)
    teachers_in_step = 0
    if isinstance(inner, Distiller) and inner.loss_scales.any_distillation_on():

        def run_teachers(inputs: torch.Tensor):
            inner.run_teachers(inputs, copy.deepcopy(prepared['data_samples']))
            return teacher_records(inner)

        try:
            teachers_in_step = trace(run_teachers, prepared['inputs'], model,
                                     observe=False).total()
        finally:
            for group in inner.records.values():
                group.reset()
    paths = {id(module): path for path, module in inner.named_modules()}
    in_step = {n.name: step.of(paths[id(n.module)]) for n in nets
               if n.role in (STUDENT, MEMBER)}
    repeated = {name: flops - trained[name] for name, flops in in_step.items()
                if flops != trained[name]}
    own = {path: step.of(path) for path in _own_modules(inner, [n.module for n in nets])}
    own = {path: flops for path, flops in own.items() if flops}
    outside = step.total() - teachers_in_step - sum(in_step.values()) - sum(own.values())
    return LegFlops('', len(images), tuple(images.shape[1:]), trained, teachers,
                    step.total(), teachers_in_step + step.without_grad(), repeated, own,
                    outside)


def census_legs(model: nn.Module, optim: dict, batch: dict) -> Dict[str, Any]:
    """The ATen ops, and the bytes their outputs hold, of one real call of
    each of the overhead benchmark's legs (:func:`~mmkd.benchmark.legs_for`:
    forward, backward and update), after one untracked call; legs of one
    letter summed.

    Returns:
        ``{'a': (ops, bytes), 'b': ..., 'c': ...}`` (``'b'`` only with
        teachers), ``'extra_ops_by_op'`` and ``'extra_bytes_by_op'``: the
        ops that (c) runs and the bytes it writes beyond (a) and (b), by op,
        most first.
    """
    found: Dict[str, List[int]] = {}
    ops_by_op: Counter = Counter()
    bytes_by_op: Counter = Counter()
    for leg in legs_for(model, BenchContext(optim)):
        if leg.role not in (LIMIT, STEP):
            continue
        letter = 'c' if leg.role == STEP else 'b' if leg.name.startswith(TEACHER) else 'a'
        leg.run(leg.prepare(batch))
        prepared = leg.prepare(batch)  # untimed in the benchmark, uncounted here
        with OpCensus() as census:
            leg.run(prepared)
        counts = found.setdefault(letter, [0, 0])
        counts[0] += census.ops
        counts[1] += census.bytes
        sign = 1 if leg.role == STEP else -1
        ops_by_op.update({op: sign * n for op, n in census.ops_by_op.items()})
        bytes_by_op.update({op: sign * n for op, n in census.bytes_by_op.items()})
    result: Dict[str, Any] = {k: (v[0], v[1]) for k, v in found.items()}
    result['extra_ops_by_op'] = dict(ops_by_op.most_common())
    result['extra_bytes_by_op'] = dict(bytes_by_op.most_common())
    return result


# ---------------------------------------------------------------------- report
def _giga(flops: int) -> str:
    return f'{flops / 1e9:.2f}'


def own_cell(legs: LegFlops, most: int = 3) -> str:
    """Where the method's own forward FLOPs run (GFLOPs), largest first."""
    def giga(flops: int) -> str:
        return f'{flops / 1e9:.3g}'

    parts = sorted(legs.own.items(), key=lambda kv: -kv[1])[:most]
    cells = [f'{path} {giga(flops)}' for path, flops in parts]
    cells += [f'{net} again {giga(flops)}' for net, flops in legs.repeated.items()]
    if legs.outside:
        cells.append(f'in no module {giga(legs.outside)}')
    return '; '.join(cells) or 'none'


TABLE_HEAD = ['| config | a | b | c | own / trained (fwd) | method\'s own forward (GFLOPs) '
              '| FLOPs c/(a+b) | time c/(a+b) | time - FLOPs |',
              '|---|---|---|---|---|---|---|---|---|']
CENSUS_HEAD = ['| config | ops a / b / c | ops c/(a+b) | most of c\'s extra ops '
               '| MiB written a / b / c | bytes c/(a+b) | most of c\'s extra MiB '
               '| FLOPs c/(a+b) | time c/(a+b) |',
               '|---|---|---|---|---|---|---|---|---|']


def _measured(time_ratio: Optional[float]) -> str:
    return '-' if time_ratio is None else f'{time_ratio:.2f}'


def table_row(legs: LegFlops, time_ratio: Optional[float]) -> str:
    """A row of the FLOP table: GFLOPs of a, b, c, the own forward over the
    trained nets' forward, where it runs, the ratios and their difference."""
    trained = sum(legs.trained.values())
    diff = '-' if time_ratio is None else f'{time_ratio - legs.ratio:+.2f}'
    return (f'| {legs.config} | {_giga(legs.a)} | {_giga(legs.b) if legs.teachers else "-"} | '
            f'{_giga(legs.c)} | {legs.extra / trained:.2f} | {own_cell(legs)} | '
            f'{legs.ratio:.2f} | {_measured(time_ratio)} | {diff} |')


def census_row(legs: LegFlops, time_ratio: Optional[float], most: int = 3) -> str:
    """A row of the census table: ops and MiB written per leg, their ratios,
    and the ops that (c) runs most often, and that write most, beyond (a) and (b)."""
    def cells(index: int, scale: float) -> str:
        return ' / '.join(f'{legs.census[k][index] / scale:.0f}' if k in legs.census
                          else '-' for k in ('a', 'b', 'c'))

    def top(key: str, scale: float) -> str:
        extra = [(op, n / scale) for op, n in legs.census.get(key, {}).items()
                 if n >= scale][:most]
        return ', '.join(f'{op} {n:.0f}' for op, n in extra) or '-'

    return (f'| {legs.config} | {cells(0, 1)} | {legs.census_ratio(0):.2f} | '
            f'{top("extra_ops_by_op", 1)} | {cells(1, 2**20)} | {legs.census_ratio(1):.2f} | '
            f'{top("extra_bytes_by_op", 2**20)} | {legs.ratio:.2f} | '
            f'{_measured(time_ratio)} |')


def measured_ratios(root: str) -> Dict[str, float]:
    """The overhead ratio c/(a+b) that the metafiles hold, by config path."""
    from .zoo import load_metafiles
    _, models = load_metafiles(root)
    return {model['Config']: model['Zoo']['Overhead']['Ratio'] for model in models.values()
            if 'Ratio' in (model.get('Zoo', {}).get('Overhead') or {})}


def replace_block(text: str, block: str) -> str:
    """``text`` with what lies between :data:`MARK_START` and :data:`MARK_END`
    replaced by ``block``."""
    from .zoo import replace_block as replace_marked
    return replace_marked(text, block, marks=(MARK_START, MARK_END))
