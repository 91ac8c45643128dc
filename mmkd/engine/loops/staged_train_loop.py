"""Training in stages (FitNets, FSP): each stage trains its own part of the
model on its own losses, for its own epochs, with its own optimizer."""
import copy
import difflib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.runner import EpochBasedTrainLoop
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from mmkd.distillers import TASK, Distiller
from mmkd.registry import LOOPS
from mmkd.utils import unwrap

#: Key of the stage index in a checkpoint's ``meta``.
STAGE_META_KEY = 'train_stage'
#: Name under which the loop writes its factors into a distiller's loss scales.
CONTROLLER = 'stage'


class StageConfigError(ValueError):
    """A stage of :class:`StagedTrainLoop` is configured wrongly."""


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + '.')


@dataclass
class TrainStage:
    """One stage of :class:`StagedTrainLoop` (see its docstring for the keys)."""

    name: str
    epochs: int
    trainable: Optional[List[str]] = None
    losses: Optional[Dict[str, float]] = None
    task_loss: float = 1.0
    optim_wrapper: Optional[dict] = None
    param_scheduler: Optional[Union[dict, list]] = None

    def trains(self, name: str) -> bool:
        """Whether the parameter or module ``name`` is trained in this stage."""
        return self.trainable is None or any(_under(name, p) for p in self.trainable)


def parse_stage(cfg: dict, index: int) -> TrainStage:
    """A :class:`TrainStage` from its config dict, with errors that say what is wrong."""
    if not isinstance(cfg, dict):
        raise StageConfigError(f'stage {index + 1} must be a dict; got {cfg!r}.')
    cfg = dict(copy.deepcopy(cfg))
    name = str(cfg.pop('name', f'stage{index + 1}'))
    known = set(TrainStage.__dataclass_fields__) - {'name'}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise StageConfigError(f'stage {name!r}: unknown key(s) {unknown}; a stage takes '
                               f'{sorted(known)}.')
    epochs = cfg.pop('epochs', None)
    if not isinstance(epochs, int) or epochs < 1:
        raise StageConfigError(f'stage {name!r} needs epochs=<a positive int>; got {epochs!r}.')
    trainable = cfg.pop('trainable', None)
    if isinstance(trainable, str):
        trainable = [trainable]
    losses = cfg.pop('losses', None)
    if isinstance(losses, (list, tuple)):
        losses = {loss: 1.0 for loss in losses}
    elif losses is not None and not isinstance(losses, dict):
        raise StageConfigError(f'stage {name!r}: losses must be a list of loss names or a dict '
                               f'name -> scale; got {losses!r}.')
    if 'task_loss' in cfg:
        cfg['task_loss'] = float(cfg['task_loss'])
    return TrainStage(name=name, epochs=epochs,
                      trainable=None if trainable is None else list(trainable),
                      losses=None if losses is None else {k: float(v) for k, v in losses.items()},
                      **cfg)


@LOOPS.register_module()
class StagedTrainLoop(EpochBasedTrainLoop):
    """Epoch-based training in consecutive stages, as FitNets and FSP train.

    Each stage names the part of the model it trains, the losses it uses,
    its epochs, and its optimizer and parameter schedulers, which are built
    afresh when the stage begins (a scheduler's ``begin``/``end``/``T_max``
    count from the start of its stage). A stage key:

    * ``epochs`` - its length;
    * ``trainable`` - prefixes of parameter names of the model (the
      distiller): ``'student.backbone.layer1'``, ``'connectors'``; None
      trains everything. Other parameters get ``requires_grad=False`` and
      stay out of the optimizer, so neither weight decay nor momentum moves
      them; their normalisation layers are kept in eval mode, so BN running
      statistics do not drift either;
    * ``losses`` - distillation losses that are on (a list: scale 1, or a
      dict name -> scale); the others are off (scale 0, not computed; see
      :class:`~mmkd.distillers.LossScales`). None: all on;
    * ``task_loss`` - factor on the student's own losses (0: off);
    * ``optim_wrapper`` / ``param_scheduler`` - the stage's; the config's
      top-level ones when left out.

    Checkpoints record the stage (``meta['train_stage']``). Resuming builds
    that stage's optimizer and schedulers before their states are loaded,
    so a run resumed in stage 2 goes on with stage 2's optimizer, momentum
    and learning rate; one resumed from the last checkpoint of stage 1 starts
    stage 2 afresh, as the uninterrupted run does.

    Under DDP, parameters frozen after wrapping get no gradient: use
    ``model_wrapper_cfg=dict(type='MMDistributedDataParallel',
    find_unused_parameters=True)``. The stage's factors multiply those of
    :class:`~mmkd.engine.DistillLossScheduleHook` (each writes its own into
    the distiller's :class:`~mmkd.distillers.LossScales`), so a warm-up
    composes with the stages.

    Args:
        runner: The runner.
        dataloader: The training dataloader (or its config).
        stages: Stage configs, in order (see above).
        val_begin: The epoch that begins validating.
        val_interval: Validation interval in epochs.
        dynamic_intervals: See MMEngine's ``EpochBasedTrainLoop``.
        max_epochs: Optional; must then equal the sum of the stages' epochs.

    Example (FitNets: hint first, then KD)::

        train_cfg = dict(_delete_=True, type='StagedTrainLoop', val_interval=1, stages=[
            dict(name='hint', epochs=1, losses=['loss_hint'], task_loss=0,
                 trainable=['student.backbone.stem', 'student.backbone.layer1',
                            'student.backbone.layer2', 'connectors'],
                 optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
                 param_scheduler=[dict(type='CosineAnnealingLR', T_max=1, by_epoch=True)]),
            dict(name='kd', epochs=4, losses=['loss_kd'])])  # top-level optimizer, schedule
    """

    def __init__(self, runner, dataloader, stages: Sequence[dict], val_begin: int = 1,
                 val_interval: int = 1,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None,
                 max_epochs: Optional[int] = None):
        if not stages:
            raise StageConfigError('StagedTrainLoop needs stages=[dict(epochs=...), ...].')
        self.stages = [parse_stage(cfg, i) for i, cfg in enumerate(stages)]
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise StageConfigError(f'stage names must differ; got {names}.')
        total = sum(s.epochs for s in self.stages)
        if max_epochs is not None and max_epochs != total:
            raise StageConfigError(
                f'max_epochs={max_epochs} but the stages last {total} epochs; drop max_epochs '
                "(an inherited train_cfg is replaced with train_cfg=dict(_delete_=True, "
                "type='StagedTrainLoop', ...)).")
        super().__init__(runner, dataloader, total, val_begin, val_interval, dynamic_intervals)
        self.ends = []
        for stage in self.stages:
            self.ends.append((self.ends[-1] if self.ends else 0) + stage.epochs)
        self.stage_index: Optional[int] = None
        self._frozen_norms: List[nn.Module] = []
        self._default_optim = self._config_of(runner, 'optim_wrapper')
        self._default_schedulers = self._config_of(runner, 'param_scheduler')
        model = unwrap(runner.model)
        self._requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
        for stage in self.stages:
            self._check_stage(stage, model)
        runner.register_hook(_StageCheckpointHook(self), priority='VERY_HIGH')

    # ------------------------------------------------------------------ config
    @staticmethod
    def _config_of(runner, key: str):
        """The top-level config of the optimizer / schedulers, while the runner has not
        built them yet (the loop is built first in ``Runner.train``)."""
        value = runner.optim_wrapper if key == 'optim_wrapper' else runner.param_schedulers
        if isinstance(value, (dict, list)) or value is None:
            return copy.deepcopy(value)
        return copy.deepcopy(runner.cfg.get(key))

    def _check_stage(self, stage: TrainStage, model: nn.Module) -> None:
        where = f'stage {stage.name!r}'
        names = list(self._requires_grad)
        for prefix in stage.trainable or []:
            if not any(_under(n, prefix) for n in names):
                modules = [n for n, m in model.named_modules()
                           if n and any(True for _ in m.parameters(recurse=False))]
                near = difflib.get_close_matches(prefix, modules, n=5, cutoff=0.5)
                raise StageConfigError(
                    f'{where}: trainable {prefix!r} names no parameter of the model. Nearest '
                    f'modules with parameters: {near or modules[:8]}.')
        if stage.trainable is not None and not any(stage.trains(n) and self._requires_grad[n]
                                                   for n in names):
            raise StageConfigError(f'{where}: nothing to train ({stage.trainable}).')
        if stage.optim_wrapper is None and self._default_optim is None:
            raise StageConfigError(f'{where} has no optim_wrapper and the config has none.')
        if not isinstance(model, Distiller):
            if stage.losses is not None or stage.task_loss != 1.0:
                raise StageConfigError(
                    f'{where} sets losses/task_loss, which needs a distiller; the model is a '
                    f'{type(model).__name__}.')
            return
        unknown = sorted(set(stage.losses or {}) - set(model.distill_losses))
        if unknown:
            raise StageConfigError(f'{where}: no distillation loss {unknown}; the model has '
                                   f'{list(model.distill_losses)}.')

    def stage_at(self, epoch: int) -> int:
        """Index of the stage that trains epoch ``epoch`` (0-based)."""
        for index, end in enumerate(self.ends):
            if epoch < end:
                return index
        return len(self.stages) - 1

    # ------------------------------------------------------------------ stages
    def enter_stage(self, index: int) -> None:
        """Freeze, switch losses, build the optimizer and schedulers of a stage."""
        runner, stage = self.runner, self.stages[index]
        model = unwrap(runner.model)
        trained = 0
        for name, param in model.named_parameters():
            param.requires_grad_(self._requires_grad.get(name, False) and stage.trains(name))
            param.grad = None
            trained += param.numel() if param.requires_grad else 0
        self._frozen_norms = [m for n, m in model.named_modules()
                              if isinstance(m, _NormBase) and not stage.trains(n)]
        scales = {}
        if isinstance(model, Distiller):
            scales = {name: 0.0 if stage.losses is not None else 1.0
                      for name in model.distill_losses}
            scales.update(stage.losses or {})
            model.loss_scales.set(CONTROLLER, {**scales, TASK: stage.task_loss})

        runner.param_schedulers = None  # scale_lr refuses to run with built schedulers
        runner.optim_wrapper = self._build_optim_wrapper(stage, model)
        runner.scale_lr(runner.optim_wrapper, runner.auto_scale_lr)
        schedulers = stage.param_scheduler
        if schedulers is None:
            schedulers = self._default_schedulers
        if schedulers:
            runner.param_schedulers = runner.build_param_scheduler(copy.deepcopy(schedulers))
        runner.optim_wrapper.initialize_count_status(runner.model, self._iter, self._max_iters)
        self.stage_index = index
        runner.message_hub.update_info(STAGE_META_KEY, stage.name)
        total = sum(p.numel() for p in model.parameters())
        start = self.ends[index] - stage.epochs
        runner.logger.info(
            f'stage {index + 1}/{len(self.stages)} {stage.name!r} (epochs {start + 1}-'
            f'{self.ends[index]}): training {trained} of {total} parameters '
            f'({stage.trainable or "all"}), {len(self._frozen_norms)} norm layers frozen; '
            f'distillation loss scales {scales}, task loss x{stage.task_loss}.')

    def _build_optim_wrapper(self, stage: TrainStage, model: nn.Module) -> OptimWrapper:
        cfg = stage.optim_wrapper if stage.optim_wrapper is not None else self._default_optim
        wrapper = self.runner.build_optim_wrapper(copy.deepcopy(cfg))
        keep = {id(p) for p in model.parameters() if p.requires_grad}
        wrappers = list(wrapper.values()) if isinstance(wrapper, OptimWrapperDict) else [wrapper]
        for each in wrappers:
            optimizer = each.optimizer
            for group in optimizer.param_groups:  # nothing stepped yet: no state to drop
                group['params'] = [p for p in group['params'] if id(p) in keep]
            optimizer.param_groups = [g for g in optimizer.param_groups if g['params']]
        return wrapper

    def _freeze_norms(self) -> None:
        for module in self._frozen_norms:
            module.eval()

    # ------------------------------------------------------------------ running
    def run(self) -> nn.Module:
        if self.stage_index is None:  # a fresh run (a resumed one has entered its stage)
            self.enter_stage(self.stage_at(self._epoch))
        return super().run()

    def run_epoch(self) -> None:
        index = self.stage_at(self._epoch)
        if index != self.stage_index:
            self.enter_stage(index)
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        self._freeze_norms()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


class _StageCheckpointHook(Hook):
    """Writes the stage into checkpoints and re-enters it on resume, before the
    runner loads the optimizer and scheduler states."""

    priority = 'VERY_HIGH'

    def __init__(self, loop: StagedTrainLoop):
        self.loop = loop

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.loop.stage_index is not None:
            checkpoint.setdefault('meta', {})[STAGE_META_KEY] = self.loop.stage_index

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):  # load_from only: training starts at 0
            return
        meta = checkpoint.get('meta', {})
        index = meta.get(STAGE_META_KEY)
        if index is None:  # a checkpoint of another loop: saved at the end of an epoch
            index = self.loop.stage_at(max(int(meta.get('epoch', 0)) - 1, 0))
        if not 0 <= index < len(self.loop.stages):
            raise StageConfigError(f'the checkpoint was saved in stage {index + 1}; this '
                                   f'config has {len(self.loop.stages)} stages.')
        self.loop.enter_stage(index)
