"""Running a net's BatchNorms on batch statistics, leaving their state alone."""
from contextlib import contextmanager
from typing import Iterator

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

#: How a teacher's BN layers normalise: stored statistics, or the batch's own.
TEACHER_NORM_MODES = ('eval', 'batch_stats')


@contextmanager
def batch_statistics(model: nn.Module, include_eval_layers: bool = True) -> Iterator[nn.Module]:
    """Inside the block, ``model``'s BN layers normalise with the batch's statistics.

    Their running mean, variance and ``num_batches_tracked`` stay as they
    were (``track_running_stats`` is switched off, so nothing is updated),
    and every layer's mode is restored on exit. OFD (Table 8 of the paper)
    runs the teacher this way during distillation (every layer); Deep Mutual
    Learning's sequential order recomputes a member's predictions this way
    (``include_eval_layers=False``: layers in eval mode, e.g. frozen ones,
    keep their stored statistics).

    Args:
        model: The net.
        include_eval_layers: Also switch BN layers that are in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)
             and (include_eval_layers or m.training)]
    saved = [(m, m.training, m.track_running_stats) for m in norms]
    try:
        for m in norms:
            m.training = True
            m.track_running_stats = False
        yield model
    finally:
        for m, training, track in saved:
            m.training = training
            m.track_running_stats = track
