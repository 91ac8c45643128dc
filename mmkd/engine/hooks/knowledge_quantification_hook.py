"""Knowledge-quantification metrics of Cheng et al. (CVPR 2020), scheduled epoch by epoch.

The measurements themselves (probe set, entropy maps, concept counts) are in
:mod:`mmkd.analysis`; this hook decides when to take them, and records them.
"""
import json
import math
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from torch import nn

from mmkd.analysis import (
    ProbeSettings,
    WeightPath,
    build_probe_set,
    count_concepts,
    flat_weights,
    measure_entropy,
    summarize_knowledge,
)
from mmkd.distillers import MEMBER, STUDENT, TEACHER, Net, nets_of
from mmkd.recorders import resolve_module
from mmkd.registry import HOOKS
from mmkd.utils import unwrap

_DEFAULTS = ProbeSettings()


@HOOKS.register_module()
class KnowledgeQuantificationHook(Hook):
    """Measures what a student learns, as in "Explaining Knowledge
    Distillation by Quantifying the Knowledge" (Cheng et al., CVPR 2020).

    On a fixed probe set of ``num_images`` validation images (the same for
    every run: they depend on ``probe_seed`` only) and after every
    ``interval`` training epochs, the hook

    1. learns the per-cell input noise that the student's ``layer``
       tolerates (:func:`mmkd.analysis.optimise_sigma`) and turns it into
       entropy maps (:func:`mmkd.analysis.measure_entropy`);
    2. counts visual concepts (cells with entropy ``b`` below the mean
       background entropy) on the foreground and the background
       (:func:`mmkd.analysis.count_concepts`);
    3. accumulates the weight distance ``D`` of the parameters under
       ``weight_prefix`` (every epoch);
    4. summarises ``N_fg, N_bg, lambda, D_mean, D_std, rho``
       (:func:`mmkd.analysis.summarize_knowledge`).

    The nets come from :func:`mmkd.distillers.nets_of`: the student is the
    model's one student (a plain model is its own student). With
    ``teacher=True`` every teacher of a distiller is measured once, before
    training, at ``teacher_layer``. Results go to
    ``<work_dir>/knowledge_quantification.json`` (rewritten each time):
    ``record['teachers']`` maps each teacher's log prefix (``'teacher'``,
    or ``'teacher/<name>'`` for each of several) to its measurement, and
    ``record['teacher']`` is that of a single teacher (``None`` with none
    or several). Scalars go, with the epoch as step, to the visualizer's
    backends: ``knowledge/<name>`` for the student and
    ``knowledge/<log prefix>/<name>`` for each teacher. Foreground masks
    use the rule for objects on a black background (Fashion-MNIST, MNIST):
    raw pixels above ``foreground_threshold``; a cell is foreground when at
    least half of its pixels are. Only the main process measures. The noise
    has its own generator, so training (its random state included) is
    unchanged.

    A cohort (:class:`mmkd.distillers.MutualLearner`) has members, not one
    student: the hook refuses it before training (measure its members'
    checkpoints with ``tools/analysis/quantify_checkpoints.py``).

    Args:
        layer: The student's layer, e.g. ``'backbone.layer3'``.
        teacher_layer: The teachers' layer; ``layer`` by default.
        teacher: Measure the teachers once (distillers only).
        num_images: The probe settings ``num_images``, ``probe_seed``,
            ``grid``, ``steps``, ``lr``, ``entropy_weight``, ``reference_sigma``,
            ``sigma_range``, ``concept_threshold`` and ``foreground_threshold``:
            see :class:`mmkd.analysis.ProbeSettings`.
        interval: Measure concepts every ``interval`` epochs (and at the
            last epoch).
        weight_prefix: Parameters of the student whose path is measured
            (``''`` = all).
        noise_seed: see :class:`mmkd.analysis.ProbeSettings`.
        out_file: JSON file name in the work dir.

    Example:
        >>> custom_hooks = [dict(type='KnowledgeQuantificationHook', layer='backbone.layer3')]
    """

    priority = 'LOW'

    def __init__(self, layer: str = 'backbone.layer3', teacher_layer: Optional[str] = None,
                 teacher: bool = True, num_images: int = _DEFAULTS.num_images,
                 probe_seed: int = _DEFAULTS.probe_seed, interval: int = 1,
                 grid: Union[int, Tuple[int, int]] = _DEFAULTS.grid,
                 steps: int = _DEFAULTS.steps, lr: float = _DEFAULTS.lr,
                 entropy_weight: float = _DEFAULTS.entropy_weight,
                 reference_sigma: float = _DEFAULTS.reference_sigma,
                 sigma_range: Sequence[float] = _DEFAULTS.sigma_range,
                 concept_threshold: float = _DEFAULTS.concept_threshold,
                 foreground_threshold: float = _DEFAULTS.foreground_threshold,
                 weight_prefix: str = 'backbone', noise_seed: int = _DEFAULTS.noise_seed,
                 out_file: str = 'knowledge_quantification.json'):
        if num_images < 1 or interval < 1 or steps < 1:
            raise ValueError(f'num_images, interval and steps must be >= 1; got {num_images}, '
                             f'{interval}, {steps}.')
        self.layer = layer
        self.teacher_layer = teacher_layer or layer
        self.with_teacher = teacher
        self.interval = interval
        self.settings = ProbeSettings(
            num_images=num_images, probe_seed=probe_seed, grid=grid, steps=steps, lr=lr,
            entropy_weight=entropy_weight, reference_sigma=reference_sigma,
            sigma_range=tuple(sigma_range), concept_threshold=concept_threshold,
            foreground_threshold=foreground_threshold, noise_seed=noise_seed)
        self.weight_prefix = weight_prefix
        self.out_file = out_file
        self.record: Dict = {}

    # ------------------------------------------------------------------ nets
    @staticmethod
    def student_of(model: nn.Module) -> Net:
        """The one student of ``model`` that the hook follows.

        Raises:
            ValueError: ``model`` is a cohort, or has no single student.
        """
        students = nets_of(model, STUDENT)
        if len(students) == 1:
            return students[0]
        members = [net.name for net in nets_of(model, MEMBER)]
        kind = type(unwrap(model)).__name__
        if members:
            raise ValueError(
                f'KnowledgeQuantificationHook follows one student, but {kind} is a cohort of '
                f'members {members} with no single student. Remove the hook from the config and '
                f'measure the members\' checkpoints with tools/analysis/quantify_checkpoints.py.')
        raise ValueError(f'KnowledgeQuantificationHook follows one student; {kind} has '
                         f'{len(students)}: {[net.name for net in students]}.')

    def teachers_of(self, model: nn.Module) -> List[Net]:
        """The teachers measured before training (none with ``teacher=False``)."""
        return nets_of(model, TEACHER) if self.with_teacher else []

    # ------------------------------------------------------------------ measuring
    def _entropy(self, net: Net, layer: str) -> torch.Tensor:
        return measure_entropy(net.module, layer, self.inputs, net.name,
                               **self.settings.sigma_kwargs)

    def _write(self, runner) -> None:
        with open(osp.join(runner.work_dir, self.out_file), 'w') as f:
            json.dump(self.record, f, allow_nan=False)

    def _scalars(self, runner, values: Dict[str, float], prefix: str, step: int) -> None:
        finite = {f'{prefix}{k}': v for k, v in values.items()
                  if isinstance(v, (int, float)) and math.isfinite(v)}
        runner.visualizer.add_scalars(finite, step=step)

    def _measure_teacher(self, runner, teacher: Net) -> Dict:
        """One teacher's entropy maps and summary, logged as ``knowledge/<log prefix>/``."""
        start = time.perf_counter()
        entropy = self._entropy(teacher, self.teacher_layer)
        summary = summarize_knowledge([entropy], self.foreground, None,
                                      self.settings.concept_threshold)
        seconds = time.perf_counter() - start
        self.record['timing']['hook_seconds'] += seconds
        self._scalars(runner, summary, f'knowledge/{teacher.log_prefix}/', runner.epoch)
        runner.logger.info(f'knowledge of the {teacher.log_prefix}: {_shown(summary)} '
                           f'({seconds:.1f} s)')
        return dict(entropy=_rounded(entropy), summary=_json_safe(summary), seconds=seconds)

    # ------------------------------------------------------------------ hooks
    def before_train(self, runner) -> None:
        # Every rank checks the nets and layers, so that a bad config fails everywhere at once.
        student = self.student_of(runner.model)
        teachers = self.teachers_of(runner.model)
        resolve_module(student.module, self.layer, student.name)
        for teacher in teachers:
            resolve_module(teacher.module, self.teacher_layer, teacher.name)
        if not is_main_process():
            return
        val_loop = runner.val_loop
        if val_loop is None:
            raise RuntimeError('KnowledgeQuantificationHook takes its probe images from the '
                               'validation set; add val_dataloader, val_cfg and val_evaluator '
                               'to the config.')
        s = self.settings
        self.inputs, self.foreground, indices, items = build_probe_set(
            val_loop.dataloader.dataset, unwrap(runner.model).data_preprocessor, s.num_images,
            s.probe_seed, s.grid, s.foreground_threshold)
        self.path = WeightPath(flat_weights(student.module, self.weight_prefix))
        self.entropy: List[torch.Tensor] = []
        self.measured: List[int] = []
        self.record = dict(
            settings=dict(layer=self.layer, teacher_layer=self.teacher_layer,
                          num_images=len(indices), probe_seed=s.probe_seed,
                          interval=self.interval, concept_threshold=s.concept_threshold,
                          foreground_threshold=s.foreground_threshold,
                          weight_prefix=self.weight_prefix,
                          **{k: list(v) if isinstance(v, tuple) else v
                             for k, v in s.sigma_kwargs.items()}),
            probe_indices=indices,
            images=[it['inputs'].squeeze(0).tolist() if it['inputs'].shape[0] == 1
                    else it['inputs'].tolist() for it in items],
            foreground=self.foreground.int().tolist(),
            started_at_epoch=runner.epoch,
            student=dict(epochs=[], weight_distance=[0.0]), teacher=None, teachers={},
            timing=dict(hook_seconds=0.0, train_seconds=0.0))
        if runner.epoch > 0:
            runner.logger.warning(f'KnowledgeQuantificationHook: resumed at epoch {runner.epoch};'
                                  f' the weight distance restarts from the resumed weights.')
        for teacher in teachers:
            self.record['teachers'][teacher.log_prefix] = self._measure_teacher(runner, teacher)
        if len(teachers) == 1:  # the key that single-teacher consumers read
            self.record['teacher'] = self.record['teachers'][teachers[0].log_prefix]
        self._write(runner)

    def before_train_epoch(self, runner) -> None:
        self._epoch_start = time.perf_counter()

    def after_train_epoch(self, runner) -> None:
        if not is_main_process() or not self.record:
            return
        start = time.perf_counter()
        train_seconds = start - self._epoch_start
        epoch = runner.epoch + 1  # runner.epoch counts finished epochs after this hook
        student = self.student_of(runner.model)
        distance = self.path.step(flat_weights(student.module, self.weight_prefix))
        self.record['student']['weight_distance'].append(distance)
        values = dict(weight_distance=distance)
        if epoch % self.interval == 0 or epoch == runner.max_epochs:
            entropy = self._entropy(student, self.layer)
            self.entropy.append(entropy)
            self.measured.append(len(self.path.distances) - 1)
            summary = summarize_knowledge(
                self.entropy, self.foreground, [self.path.distances[i] for i in self.measured],
                self.settings.concept_threshold)
            counts = _counts(entropy, self.foreground, self.settings.concept_threshold)
            self.record['student']['epochs'].append(dict(
                epoch=epoch, weight_distance=distance, entropy=_rounded(entropy), **counts))
            self.record['student']['summary'] = _json_safe(summary)
            values.update(summary)
        seconds = time.perf_counter() - start
        timing = self.record['timing']
        timing['hook_seconds'] += seconds
        timing['train_seconds'] += train_seconds
        timing['overhead'] = timing['hook_seconds'] / max(timing['train_seconds'], 1e-9)
        values['seconds'] = seconds
        self._scalars(runner, values, 'knowledge/', epoch)
        self._write(runner)
        runner.logger.info(f'knowledge (epoch {epoch}): {_shown(values)}; {seconds:.1f} s, '
                           f'{100 * seconds / max(train_seconds, 1e-9):.1f}% of the epoch\'s '
                           f'training')


def _counts(entropy: torch.Tensor, foreground: torch.Tensor, threshold: float) -> Dict:
    found = count_concepts(entropy, foreground, threshold)
    return dict(n_fg=found.n_fg.tolist(), n_bg=found.n_bg.tolist())


def _rounded(entropy: torch.Tensor) -> list:
    return [[[round(v, 4) for v in row] for row in image] for image in entropy.tolist()]


def _json_safe(values: Dict[str, float]) -> Dict[str, Optional[float]]:
    return {k: (v if math.isfinite(v) else None) for k, v in values.items()}


def _shown(values: Dict[str, float]) -> str:
    return '  '.join(f'{k}: {v:.3f}' for k, v in values.items() if math.isfinite(v))
