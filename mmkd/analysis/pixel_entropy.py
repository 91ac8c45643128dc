"""Per-pixel entropy of an input for a network layer (Cheng et al., CVPR 2020).

Each image ``x`` is perturbed by Gaussian noise whose standard deviation
``sigma`` varies over a coarse grid of cells: ``x' = x + sigma * eps``,
``eps ~ N(0, I)``. ``sigma`` is learned so that the perturbation is as large
as possible (maximum entropy) while the layer's feature barely changes.
Cells where the network tolerates little noise are the ones whose
information it keeps: low entropy means the cell is used.
"""
import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

#: ``0.5 * log(2 * pi * e)``: the entropy of a unit Gaussian, in nats.
UNIT_GAUSSIAN_ENTROPY = 0.5 * math.log(2 * math.pi * math.e)


def gaussian_entropy(sigma: torch.Tensor) -> torch.Tensor:
    """Differential entropy of ``N(mu, sigma^2)`` elementwise, in nats.

    ``H = log(sigma) + 0.5 * log(2 * pi * e)``.

    Args:
        sigma: Standard deviations, any shape, all > 0.

    Returns:
        The entropies, same shape.

    Example:
        >>> gaussian_entropy(torch.tensor([1.0]))  # 0.5 * log(2 pi e)
        tensor([1.4189])
    """
    return torch.log(sigma) + UNIT_GAUSSIAN_ENTROPY


def upsample_cells(cells: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Spread a (N, gh, gw) grid of cell values over (N, 1, H, W) pixels.

    Args:
        cells: One value per cell.
        size: (H, W) of the image.

    Returns:
        Each pixel takes the value of the cell it falls in (nearest).
    """
    return F.interpolate(cells.unsqueeze(1), size=tuple(size), mode='nearest')


@dataclass
class SigmaResult:
    """What :func:`optimise_sigma` learned.

    Attributes:
        sigma: (N, gh, gw) noise standard deviation of each cell, clamped.
        entropy: (N, gh, gw) entropy of each cell (:func:`gaussian_entropy`).
        reference: (N,) feature change under the reference noise.
        losses: Mean loss over the batch at each step (one noise draw
            each: noisy; see :func:`perturbation_loss` for a fair comparison).
    """

    sigma: torch.Tensor
    entropy: torch.Tensor
    reference: torch.Tensor
    losses: List[float] = field(default_factory=list)


def feature_change(feature_fn: Callable[[torch.Tensor], torch.Tensor], clean: torch.Tensor,
                   perturbed: torch.Tensor) -> torch.Tensor:
    """``||f(x') - f(x)||^2`` per image, summed over the feature's elements."""
    diff = feature_fn(perturbed) - clean
    return diff.flatten(1).pow(2).sum(1)


def perturbation_loss(feature_fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                      clean: torch.Tensor, reference: torch.Tensor, sigma: torch.Tensor,
                      noise: torch.Tensor, entropy_weight: float) -> torch.Tensor:
    """The loss of :func:`optimise_sigma` per image, for one noise draw.

    ``||f(x + sigma * eps) - f(x)||^2 / sigma_f^2 - lambda * mean_cells(H(sigma))``.

    Args:
        feature_fn: Maps inputs to the layer's feature.
        inputs: (N, C, H, W) images.
        clean: ``f(inputs)``.
        reference: (N,) ``sigma_f^2``.
        sigma: (N, rows, cols) noise level of each cell.
        noise: ``eps``, shaped like ``inputs``.
        entropy_weight: ``lambda``.

    Returns:
        (N,) losses.
    """
    pixels = upsample_cells(sigma, inputs.shape[-2:])
    change = feature_change(feature_fn, clean, inputs + pixels * noise)
    return change / reference - entropy_weight * gaussian_entropy(sigma).flatten(1).mean(1)


def optimise_sigma(feature_fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                   grid: Union[int, Tuple[int, int]] = 7, steps: int = 30, lr: float = 0.1,
                   entropy_weight: float = 2.0, reference_sigma: float = 0.1,
                   sigma_range: Tuple[float, float] = (0.01, 3.0), reference_samples: int = 4,
                   seed: Optional[int] = 0) -> SigmaResult:
    """Learn the per-cell noise that a layer tolerates, for a batch of images.

    For each image, with ``f`` the layer's feature and ``H`` the cell
    entropies, Adam minimises over ``log(sigma)``::

        Loss(sigma) = E_eps[ ||f(x + sigma * eps) - f(x)||^2 ] / sigma_f^2
                      - lambda * mean_cells(H(sigma)),
        sigma_f^2   = E_eps[ ||f(x + sigma_0 * eps) - f(x)||^2 ],

    with ``sigma_0 = reference_sigma`` the same everywhere, one ``eps`` draw
    per step, and ``sigma`` clamped to ``sigma_range`` after every step.
    The images are independent (their losses add up), so call the network
    in eval mode: batch statistics would couple them. Only the gradient of
    ``sigma`` is computed; the network's ``.grad`` stay untouched. With a
    layer equally sensitive to every cell the optimum is
    ``sigma = sigma_0 * sqrt(lambda / 2)``, so ``lambda = 2`` makes the
    reference noise the neutral level.

    Args:
        feature_fn: Maps (N, C, H, W) inputs to the layer's (N, ...) feature.
        inputs: (N, C, H, W) images as the network sees them (normalised).
        grid: Cells per side (int) or (rows, cols); ``sigma`` is shared by
            the pixels of a cell and by the channels.
        steps: Adam steps.
        lr: Adam learning rate on ``log(sigma)``.
        entropy_weight: ``lambda``.
        reference_sigma: ``sigma_0``, also the initial ``sigma``.
        sigma_range: (min, max) of ``sigma``.
        reference_samples: Noise draws averaged into ``sigma_f^2``.
        seed: Seed of the noise (a private generator: the global random
            state is not touched); None draws from the global state.

    Returns:
        A :class:`SigmaResult`.

    Example:
        >>> net = torch.nn.Conv2d(1, 4, 3)
        >>> result = optimise_sigma(net, torch.randn(2, 1, 28, 28), grid=7, steps=5)
        >>> result.sigma.shape
        torch.Size([2, 7, 7])
    """
    low, high = sigma_range
    if not 0 < low <= reference_sigma <= high:
        raise ValueError(f'need 0 < sigma_range[0] <= reference_sigma <= sigma_range[1]; got '
                         f'sigma_range={sigma_range}, reference_sigma={reference_sigma}.')
    if inputs.dim() != 4:
        raise ValueError(f'inputs must be (N, C, H, W); got shape {tuple(inputs.shape)}.')
    rows, cols = (grid, grid) if isinstance(grid, int) else tuple(grid)
    n, _, height, width = inputs.shape
    if rows > height or cols > width:
        raise ValueError(f'grid {rows}x{cols} is finer than the {height}x{width} image.')
    inputs = inputs.detach()
    generator = None
    if seed is not None:
        generator = torch.Generator(device=inputs.device)
        generator.manual_seed(seed)

    def noise() -> torch.Tensor:
        return torch.randn(inputs.shape, generator=generator, device=inputs.device,
                           dtype=inputs.dtype)

    with torch.no_grad():
        clean = feature_fn(inputs).detach()
        reference = torch.stack([
            feature_change(feature_fn, clean, inputs + reference_sigma * noise())
            for _ in range(max(1, reference_samples))]).mean(0).clamp_min(1e-12)

    log_sigma = torch.full((n, rows, cols), math.log(reference_sigma), device=inputs.device,
                           dtype=inputs.dtype, requires_grad=True)
    optimizer = torch.optim.Adam([log_sigma], lr=lr)
    log_low, log_high = math.log(low), math.log(high)
    losses = []
    for _ in range(steps):
        loss = perturbation_loss(feature_fn, inputs, clean, reference, log_sigma.exp(), noise(),
                                 entropy_weight).mean()
        grad, = torch.autograd.grad(loss, [log_sigma])
        optimizer.zero_grad(set_to_none=True)
        log_sigma.grad = grad
        optimizer.step()
        with torch.no_grad():
            log_sigma.clamp_(log_low, log_high)
        losses.append(loss.item())
    sigma = log_sigma.detach().exp()
    return SigmaResult(sigma=sigma, entropy=gaussian_entropy(sigma), reference=reference,
                       losses=losses)
