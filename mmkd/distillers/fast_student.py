"""Channels-last training of the student and of its connectors.

A convolutional student trains faster with its weights, and so its
activations and gradients, in channels-last memory format: on the CPU
measured, the training step (forward, backward, SGD) of a ResNet-8 or
ResNet-20 took 0.83-0.92 of the contiguous one (``docs/benchmark.md``). The
function it computes is the same up to float32 round-off; what changes is
the order in which the kernels add.

The distiller decides after its dry run (:func:`train_in_channels_last`):
a student with 2-D convolutions and no module that needs contiguous inputs
(MMCV's compiled ops) is put in channels-last format (its strided 1x1
convolutions stay contiguous: PyTorch's channels-last CPU kernel for their
weight gradient corrupts the heap, see
:func:`~mmkd.distillers.memory_format.to_channels_last`), the dry run repeated,
and the student's output and records compared with the contiguous
student's. A student whose values differ beyond round-off, or whose code
fails on channels-last tensors (``view`` of a permuted tensor), keeps the
contiguous format, with a warning. Its records are read in the usual layout
(:func:`~mmkd.distillers.memory_format.record_reader`), so losses and
connectors see what they would see without it.

The connectors with convolutions (FitNets' regressor, OFD's 1x1 conv + BN,
ReviewKD's ABFs, ...) are trained with the student and follow it
(:func:`train_connectors_in_channels_last`): where the student went
channels-last, they are put in channels-last format together once they are
built, and kept there where every connector's output on the dry run equals
the contiguous one's. Their outputs too are read in the usual layout, so
losses see what they would see without it. ReviewKD gains most: on the CPU
measured, its step's time beyond the student and the teacher went from
0.47 s (student and ABFs contiguous) to 0.41 s (``docs/benchmark.md``).

What stays the same: the ``state_dict`` (values; tensors are saved with
their strides and load into a contiguous net as well), the optimizer (its
state takes each parameter's layout), DDP (gradients take their
parameter's layout), device moves (they keep the format) and exported
students.
"""
import warnings
from typing import Any, Callable, Dict, Sequence

import torch
from torch import nn

from .fast_teacher import first_difference, snapshot
from .memory_format import (
    is_channels_last,
    suits_channels_last,
    to_channels_last,
    to_standard_format,
)
from .references import ConnectorRef

#: The key of the student's output among its records in the dry-run check
#: (a record name cannot hold a space).
_OUTPUT = 'the output'


def _student_values(distiller, inputs: torch.Tensor, samples) -> Dict[str, Any]:
    """The student's ``tensor`` output and its records on ``inputs`` (the
    teachers' records of the last forward are kept)."""
    out = distiller._forward_nets(inputs, samples, 'tensor', run_teachers=False)
    values = {name: snapshot(recorder.get())
              for name, recorder in distiller.student_records.recorders.items()}
    values[_OUTPUT] = snapshot(out)
    return values


def _connector_values(distiller) -> Dict[str, Any]:
    """Every connector's output on the records of the last forward, as losses read it."""
    resolve = distiller._resolver()
    return {name: snapshot(resolve(ConnectorRef(name))) for name in distiller.connectors}


def _keep_if_equal(what: str, modules: Sequence[nn.Module],
                   values: Callable[[], Dict[str, Any]], restore_values: bool) -> bool:
    """Put ``modules`` in channels-last format (as trained nets) and keep them
    so where ``values()`` stays the same up to round-off and raises nothing;
    otherwise put them back and warn (and, with ``restore_values``, call
    ``values()`` once more, for the records it leaves behind). Whether they
    stay in channels-last format."""
    before = values()
    why = None
    try:
        for module in modules:
            to_channels_last(module, trained=True)
    except Exception as err:  # noqa: BLE001  (e.g. a 5-D parameter)
        why = f'the conversion fails ({type(err).__name__}: {err})'
    if why is None:
        try:
            after = values()
        except Exception as err:  # noqa: BLE001  (e.g. a view of a permuted channels-last tensor)
            why = f'the forward fails on channels-last tensors ({type(err).__name__}: {err})'
        else:
            found = first_difference(before, after)
            why = None if found is None else \
                f'{found[0]!r} differs from the contiguous value ({found[1]})'
    if why is None:
        return True
    for module in modules:
        to_standard_format(module)
    if restore_values:
        values()
    warnings.warn(f'{what}: in channels-last format, {why}; trained in the contiguous format '
                  'instead (student_channels_last=False says so and skips this check).')
    return False


def train_in_channels_last(distiller, inputs: torch.Tensor, samples: Any) -> bool:
    """Put the distiller's student in channels-last format where it suits the
    student and keeps its values (see the module's docstring); whether it did.

    Called by :meth:`Distiller._finish_setup` under ``no_grad``, in eval
    mode, after the dry run (records located, copies decided). What is
    compared is the ``tensor`` forward of the dry run: code that only runs in
    ``loss`` mode or in training is not (it would fail at the first step;
    ``student_channels_last=False`` then trains the student as built).
    """
    student = distiller.student
    if not distiller.student_channels_last or not suits_channels_last(student):
        return False
    return _keep_if_equal('student', [student],
                          lambda: _student_values(distiller, inputs, samples),
                          restore_values=True)


def train_connectors_in_channels_last(distiller) -> bool:
    """Put the distiller's convolutional connectors in channels-last format,
    all of them or none, where the student is in channels-last format and
    the connectors' outputs keep their values; whether it did.

    Called by :meth:`Distiller._finish_setup` under ``no_grad``, in eval
    mode, once the connectors are built and the losses checked on the dry
    run's records. What is compared is each connector's output in eval mode:
    code that only runs in training (MGD's random mask, BNs on batch
    statistics) and the backward pass are not (should they fail, they fail
    at the first step; ``student_channels_last=False`` then trains the
    student and the connectors as built). Connectors beside a contiguous
    student stay contiguous: their convolutions would convert the records
    to channels-last and their outputs back, for a gain that was not
    measured.
    """
    chosen = [c for c in distiller.connectors.values() if suits_channels_last(c)]
    if not is_channels_last(distiller.student) or not chosen:
        return False
    return _keep_if_equal('connectors', chosen, lambda: _connector_values(distiller),
                          restore_values=False)
