"""Knowledge-quantification metrics of Cheng et al. (CVPR 2020), epoch by epoch."""
import json
import math
import os.path as osp
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from torch import nn

from mmkd.analysis import (WeightPath, cell_foreground, count_concepts, flat_weights,
                           optimise_sigma, summarize_knowledge, threshold_foreground)
from mmkd.recorders.base import resolve_module
from mmkd.registry import HOOKS
from .utils import unwrap


class _StopForward(Exception):
    """Ends a forward pass once the probed layer has run."""


def layer_feature_fn(net: nn.Module, layer: str,
                     owner: str = 'model') -> Callable[[torch.Tensor], torch.Tensor]:
    """A function mapping inputs to ``net``'s output at module ``layer``.

    The forward stops right after ``layer`` runs, so the rest of the net
    costs nothing. ``net`` must accept ``net(inputs, mode='tensor')`` (the
    models of mmpretrain, mmdet and mmseg do).

    Args:
        net: The network.
        layer: Dotted module path, e.g. ``'backbone.layer3'``.
        owner: Name of the net in error messages.

    Returns:
        The feature function.
    """
    module = resolve_module(net, layer, owner)

    def feature(inputs: torch.Tensor) -> torch.Tensor:
        found = []

        def grab(_module, _args, output):
            found.append(output[-1] if isinstance(output, (tuple, list)) else output)
            raise _StopForward

        handle = module.register_forward_hook(grab)
        try:
            net(inputs, mode='tensor')
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not found:
            raise RuntimeError(f'{owner}: module {layer!r} did not run in forward; choose a layer '
                               f'on the path from the input to the output.')
        return found[0]

    return feature


def build_probe_set(dataset, data_preprocessor: Callable, num_images: int, seed: int,
                    grid: Union[int, Tuple[int, int]], foreground_threshold: float
                    ) -> Tuple[torch.Tensor, torch.Tensor, List[int], list]:
    """A fixed set of dataset images, preprocessed, with their foreground cells.

    The images depend on ``seed`` and the dataset only, so every run (and
    every checkpoint) is measured on the same ones.

    Args:
        dataset: An MMEngine dataset whose items hold ``inputs`` (raw
            C x H x W images) and ``data_samples``.
        data_preprocessor: The model's data preprocessor.
        num_images: How many images (at most the dataset's length).
        seed: Seed that picks them.
        grid: Cells per side of the noise map.
        foreground_threshold: Raw pixel value above which a pixel is
            foreground (:func:`mmkd.analysis.threshold_foreground`).

    Returns:
        ``(inputs, foreground, indices, items)``: (N, C, H, W) preprocessed
        inputs, (N, rows, cols) bool foreground cells, the dataset indices
        and the raw items.
    """
    count = min(num_images, len(dataset))
    generator = torch.Generator().manual_seed(seed)
    indices = sorted(torch.randperm(len(dataset), generator=generator)[:count].tolist())
    items = [dataset[i] for i in indices]
    data = data_preprocessor(dict(inputs=[it['inputs'] for it in items],
                                  data_samples=[it['data_samples'] for it in items]), False)
    inputs = data['inputs']
    masks = []
    for item in items:
        mask = threshold_foreground(item['inputs'].unsqueeze(0), foreground_threshold)[0]
        pad_h, pad_w = inputs.shape[-2] - mask.shape[-2], inputs.shape[-1] - mask.shape[-1]
        if pad_h < 0 or pad_w < 0:
            raise ValueError(f'the data preprocessor shrank the images from '
                             f'{tuple(mask.shape)} to {tuple(inputs.shape[-2:])}; the '
                             f'foreground rule needs images that are not resized there.')
        masks.append(F.pad(mask, (0, pad_w, 0, pad_h)))
    return inputs, cell_foreground(torch.stack(masks), grid), indices, items


def measure_entropy(net: nn.Module, layer: str, inputs: torch.Tensor, owner: str = 'model',
                    **sigma_kwargs) -> torch.Tensor:
    """Entropy maps of ``inputs`` for ``net``'s ``layer``, in eval mode.

    Args:
        net: The network (its train/eval mode is restored afterwards).
        layer: Dotted module path.
        inputs: (N, C, H, W) preprocessed images.
        owner: Name of the net in error messages.
        **sigma_kwargs: Options of :func:`mmkd.analysis.optimise_sigma`.

    Returns:
        (N, rows, cols) entropy on the CPU.
    """
    was_training = net.training
    net.eval()  # batch statistics would couple the probe images
    try:
        with torch.enable_grad():
            result = optimise_sigma(layer_feature_fn(net, layer, owner),
                                    inputs.to(next(net.parameters()).device), **sigma_kwargs)
    finally:
        net.train(was_training)
    return result.entropy.cpu()


@HOOKS.register_module()
class KnowledgeQuantificationHook(Hook):
    """Measures what a student learns, as in "Explaining Knowledge
    Distillation by Quantifying the Knowledge" (Cheng et al., CVPR 2020).

    On a fixed probe set of ``num_images`` validation images (the same for
    every run: they depend on ``probe_seed`` only) and after every
    ``interval`` training epochs, the hook

    1. learns the per-cell input noise that the student's ``layer``
       tolerates (:func:`mmkd.analysis.optimise_sigma`) and turns it into
       entropy maps;
    2. counts visual concepts (cells with entropy ``b`` below the mean
       background entropy) on the foreground and the background
       (:func:`mmkd.analysis.count_concepts`);
    3. accumulates the weight distance ``D`` of the parameters under
       ``weight_prefix`` (every epoch);
    4. summarises ``N_fg, N_bg, lambda, D_mean, D_std, rho``
       (:func:`mmkd.analysis.summarize_knowledge`).

    For a distiller the student is ``model.student``; its teacher (if
    ``teacher=True``) is measured once, before training. Results go to
    ``<work_dir>/knowledge_quantification.json`` (rewritten each time) and,
    as ``knowledge/<name>`` scalars with the epoch as step, to the
    visualizer's backends. Foreground masks use the rule for objects on a
    black background (Fashion-MNIST, MNIST): raw pixels above
    ``foreground_threshold``; a cell is foreground when at least half of
    its pixels are. Only the main process measures. The noise has its own
    generator, so training (its random state included) is unchanged.

    Args:
        layer: The student's layer, e.g. ``'backbone.layer3'``.
        teacher_layer: The teacher's layer; ``layer`` by default.
        teacher: Measure the teacher once (distillers only).
        num_images: Size of the probe set.
        probe_seed: Seed that picks the probe images.
        interval: Measure concepts every ``interval`` epochs (and at the
            last epoch).
        grid: Cells per side of the noise map (7 for 28 px images; about 16
            for 224 px ones).
        steps: Adam steps of the noise optimisation.
        lr: Its learning rate on ``log(sigma)``.
        entropy_weight: ``lambda`` of the noise loss.
        reference_sigma: Reference noise ``sigma_0`` (normalised inputs).
        sigma_range: Clamp of ``sigma``.
        concept_threshold: ``b`` of the concept rule.
        foreground_threshold: Raw pixel value above which a pixel is
            foreground.
        weight_prefix: Parameters of the student whose path is measured
            (``''`` = all).
        noise_seed: Seed of the noise, the same at every measurement.
        out_file: JSON file name in the work dir.

    Example:
        >>> custom_hooks = [dict(type='KnowledgeQuantificationHook', layer='backbone.layer3')]
    """

    priority = 'LOW'

    def __init__(self, layer: str = 'backbone.layer3', teacher_layer: Optional[str] = None,
                 teacher: bool = True, num_images: int = 32, probe_seed: int = 0,
                 interval: int = 1, grid: Union[int, Tuple[int, int]] = 7, steps: int = 10,
                 lr: float = 0.2, entropy_weight: float = 2.0, reference_sigma: float = 0.1,
                 sigma_range: Sequence[float] = (0.01, 3.0), concept_threshold: float = 0.2,
                 foreground_threshold: float = 10.0, weight_prefix: str = 'backbone',
                 noise_seed: int = 0, out_file: str = 'knowledge_quantification.json'):
        if num_images < 1 or interval < 1 or steps < 1:
            raise ValueError(f'num_images, interval and steps must be >= 1; got {num_images}, '
                             f'{interval}, {steps}.')
        self.layer = layer
        self.teacher_layer = teacher_layer or layer
        self.with_teacher = teacher
        self.num_images = num_images
        self.probe_seed = probe_seed
        self.interval = interval
        self.grid = grid
        self.sigma_kwargs = dict(grid=grid, steps=steps, lr=lr, entropy_weight=entropy_weight,
                                 reference_sigma=reference_sigma,
                                 sigma_range=tuple(sigma_range), seed=noise_seed)
        self.concept_threshold = concept_threshold
        self.foreground_threshold = foreground_threshold
        self.weight_prefix = weight_prefix
        self.out_file = out_file
        self.record: Dict = {}

    # ------------------------------------------------------------------ measuring
    def _entropy(self, net: nn.Module, layer: str, owner: str) -> torch.Tensor:
        return measure_entropy(net, layer, self.inputs, owner, **self.sigma_kwargs)

    def _write(self, runner) -> None:
        with open(osp.join(runner.work_dir, self.out_file), 'w') as f:
            json.dump(self.record, f, allow_nan=False)

    def _scalars(self, runner, values: Dict[str, float], prefix: str, step: int) -> None:
        finite = {f'{prefix}{k}': v for k, v in values.items()
                  if isinstance(v, (int, float)) and math.isfinite(v)}
        runner.visualizer.add_scalars(finite, step=step)

    # ------------------------------------------------------------------ hooks
    def before_train(self, runner) -> None:
        if not is_main_process():
            return
        model = unwrap(runner.model)
        student = getattr(model, 'student', model)
        val_loop = runner.val_loop
        if val_loop is None:
            raise RuntimeError('KnowledgeQuantificationHook takes its probe images from the '
                               'validation set; add val_dataloader, val_cfg and val_evaluator '
                               'to the config.')
        self.inputs, self.foreground, indices, items = build_probe_set(
            val_loop.dataloader.dataset, model.data_preprocessor, self.num_images,
            self.probe_seed, self.grid, self.foreground_threshold)
        self.path = WeightPath(flat_weights(student, self.weight_prefix))
        self.entropy: List[torch.Tensor] = []
        self.measured: List[int] = []
        self.record = dict(
            settings=dict(layer=self.layer, teacher_layer=self.teacher_layer,
                          num_images=len(indices), probe_seed=self.probe_seed,
                          interval=self.interval, concept_threshold=self.concept_threshold,
                          foreground_threshold=self.foreground_threshold,
                          weight_prefix=self.weight_prefix,
                          **{k: list(v) if isinstance(v, tuple) else v
                             for k, v in self.sigma_kwargs.items()}),
            probe_indices=indices,
            images=[it['inputs'].squeeze(0).tolist() if it['inputs'].shape[0] == 1
                    else it['inputs'].tolist() for it in items],
            foreground=self.foreground.int().tolist(),
            started_at_epoch=runner.epoch,
            student=dict(epochs=[], weight_distance=[0.0]), teacher=None,
            timing=dict(hook_seconds=0.0, train_seconds=0.0))
        if runner.epoch > 0:
            runner.logger.warning(f'KnowledgeQuantificationHook: resumed at epoch {runner.epoch};'
                                  f' the weight distance restarts from the resumed weights.')
        teacher = getattr(model, 'teacher', None)
        if self.with_teacher and isinstance(teacher, nn.Module):
            start = time.perf_counter()
            entropy = self._entropy(teacher, self.teacher_layer, 'teacher')
            summary = summarize_knowledge([entropy], self.foreground, None,
                                          self.concept_threshold)
            seconds = time.perf_counter() - start
            self.record['teacher'] = dict(entropy=_rounded(entropy), summary=_json_safe(summary),
                                          seconds=seconds)
            self.record['timing']['hook_seconds'] += seconds
            self._scalars(runner, summary, 'knowledge/teacher/', runner.epoch)
            runner.logger.info(f'knowledge of the teacher: {_shown(summary)} ({seconds:.1f} s)')
        self._write(runner)

    def before_train_epoch(self, runner) -> None:
        self._epoch_start = time.perf_counter()

    def after_train_epoch(self, runner) -> None:
        if not is_main_process() or not self.record:
            return
        start = time.perf_counter()
        train_seconds = start - self._epoch_start
        epoch = runner.epoch + 1  # runner.epoch counts finished epochs after this hook
        student = getattr(unwrap(runner.model), 'student', unwrap(runner.model))
        distance = self.path.step(flat_weights(student, self.weight_prefix))
        self.record['student']['weight_distance'].append(distance)
        values = dict(weight_distance=distance)
        if epoch % self.interval == 0 or epoch == runner.max_epochs:
            entropy = self._entropy(student, self.layer, 'student')
            self.entropy.append(entropy)
            self.measured.append(len(self.path.distances) - 1)
            summary = summarize_knowledge(
                self.entropy, self.foreground, [self.path.distances[i] for i in self.measured],
                self.concept_threshold)
            counts = _counts(entropy, self.foreground, self.concept_threshold)
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
