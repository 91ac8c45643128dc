"""The probe of a knowledge measurement: which images, and the settings it runs with."""
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple, Union

import torch
import torch.nn.functional as F

from .foreground import cell_foreground, threshold_foreground


@dataclass(frozen=True)
class ProbeSettings:
    """How nets are probed: the probe set, the noise optimisation, the concept rule.

    The defaults are those of ``KnowledgeQuantificationHook`` and of
    ``tools/analysis/quantify_checkpoints.py``, stated here once.

    Args:
        num_images: Size of the probe set.
        probe_seed: Seed that picks the probe images.
        grid: Cells per side of the noise map (7 for 28 px images; about 16
            for 224 px ones), or ``(rows, cols)``.
        steps: Adam steps of the noise optimisation.
        lr: Its learning rate on ``log(sigma)``.
        entropy_weight: ``lambda`` of the noise loss.
        reference_sigma: Reference noise ``sigma_0`` (normalised inputs).
        sigma_range: Clamp of ``sigma``.
        concept_threshold: ``b`` of the concept rule.
        foreground_threshold: Raw pixel value above which a pixel is
            foreground.
        noise_seed: Seed of the noise, the same at every measurement.

    Example:
        >>> settings = ProbeSettings(num_images=8)
        >>> entropy = measure_entropy(net, 'backbone.layer3', inputs, **settings.sigma_kwargs)
    """

    num_images: int = 32
    probe_seed: int = 0
    grid: Union[int, Tuple[int, int]] = 7
    steps: int = 10
    lr: float = 0.2
    entropy_weight: float = 2.0
    reference_sigma: float = 0.1
    sigma_range: Tuple[float, float] = (0.01, 3.0)
    concept_threshold: float = 0.2
    foreground_threshold: float = 10.0
    noise_seed: int = 0

    def __post_init__(self) -> None:
        if self.num_images < 1 or self.steps < 1:
            raise ValueError(f'num_images and steps must be >= 1; got {self.num_images}, '
                             f'{self.steps}.')
        # Configs give lists; the settings stay hashable and compare equal either way.
        object.__setattr__(self, 'sigma_range', tuple(self.sigma_range))
        if not isinstance(self.grid, int):
            object.__setattr__(self, 'grid', tuple(self.grid))

    @property
    def sigma_kwargs(self) -> Dict:
        """Options of :func:`mmkd.analysis.optimise_sigma` (and of
        :func:`mmkd.analysis.measure_entropy`)."""
        return dict(grid=self.grid, steps=self.steps, lr=self.lr,
                    entropy_weight=self.entropy_weight, reference_sigma=self.reference_sigma,
                    sigma_range=self.sigma_range, seed=self.noise_seed)


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
