"""Entropy maps of a net's layer: the layer's output as a function, and its measurement."""
from typing import Callable

import torch
from torch import nn

from mmkd.recorders import ModuleOutputs, RecordNotFoundError, run_until_recorded

from .pixel_entropy import optimise_sigma


def layer_feature_fn(net: nn.Module, layer: str,
                     owner: str = 'model') -> Callable[[torch.Tensor], torch.Tensor]:
    """A function mapping inputs to ``net``'s output at module ``layer``.

    The forward stops right after ``layer`` runs
    (:func:`mmkd.recorders.run_until_recorded`), so the rest of the net
    costs nothing. Where the layer returns a tuple or list, its last item
    is the feature. ``net`` must accept ``net(inputs, mode='tensor')`` (the
    models of mmpretrain, mmdet and mmseg do).

    Args:
        net: The network.
        layer: Dotted module path, e.g. ``'backbone.layer3'``.
        owner: Name of the net in error messages.

    Returns:
        The feature function. It raises :class:`mmkd.recorders.RecordNotFoundError`
        (a ``RuntimeError``) when ``layer`` did not run in the forward.

    Raises:
        mmkd.recorders.RecorderPathError: ``net`` has no module ``layer``
            (the message names the nearest paths).
    """
    # No copy: the forward ends right after the layer, before anything can change it in place.
    recorder = ModuleOutputs(layer, clone=False).attach(net, owner)

    def feature(inputs: torch.Tensor) -> torch.Tensor:
        run_until_recorded(lambda: net(inputs, mode='tensor'), [recorder])
        try:
            output = recorder.get()
        except RecordNotFoundError as error:
            raise RecordNotFoundError(
                f'{owner}: module {layer!r} did not run in forward; choose a layer on the path '
                f'from the input to the output.') from error
        finally:
            recorder.reset()
        return output[-1] if isinstance(output, (tuple, list)) else output

    return feature


def measure_entropy(net: nn.Module, layer: str, inputs: torch.Tensor, owner: str = 'model',
                    **sigma_kwargs) -> torch.Tensor:
    """Entropy maps of ``inputs`` for ``net``'s ``layer``, in eval mode.

    Args:
        net: The network (its train/eval mode is restored afterwards).
        layer: Dotted module path.
        inputs: (N, C, H, W) preprocessed images.
        owner: Name of the net in error messages.
        **sigma_kwargs: Options of :func:`mmkd.analysis.optimise_sigma`
            (e.g. :attr:`mmkd.analysis.ProbeSettings.sigma_kwargs`).

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
