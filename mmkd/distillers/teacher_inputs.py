"""A teacher's own inputs: its data preprocessor on the raw batch, its input size.

By default every teacher sees the student's inputs: the batch after the
distiller's (the student's) data preprocessor. A teacher trained elsewhere may
expect other inputs (another mean and std, RGB instead of BGR, another size):

* ``teacher=dict(..., preprocess='own')``: the teacher's own data
  preprocessor (the one of its config or model dict; a
  ``data_preprocessor=dict(mean=..., std=..., to_rgb=...)`` in the entry is
  merged into it, as any model key) runs on the *raw* batch, in test mode
  (no random batch augmentation), on a copy of the data samples;
* ``teacher=dict(..., input_size=(H, W))``: the teacher's inputs (its own, or
  the student's) are resized to ``(H, W)``, bilinear.

How the raw batch reaches the teachers: MMEngine's ``train_step`` (the
model's, or a DDP wrapper's) hands it to the distiller's data preprocessor in
training mode, then calls ``forward(mode='loss')``. When a teacher
preprocesses by itself, a forward pre-hook on that preprocessor keeps each
batch that enters it (in training and in evaluation, so that tools calling
:meth:`Distiller.distillation_inputs` in eval mode work);
:meth:`Distiller.run_teachers` gives it to each teacher's
:class:`TeacherInputs` and lets it go, and refuses to run such a teacher
without a raw batch of the same size (it would silently get the student's
inputs). Without such a teacher no hook is installed and nothing changes.
The build-time dry run (random inputs, no raw batch) feeds every teacher the
dry-run input (resized with ``input_size``); validation and testing run the
student only, and :class:`~mmkd.engine.TeacherEvaluationHook` evaluates a
teacher through :meth:`Distiller.preprocessor_of`. A
:class:`~mmkd.distillers.DetectionDistiller` with records on the RoI head
refuses ``input_size`` (the student's RoIs are in its own coordinates).
"""
import copy
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .errors import DistillerConfigError

#: Keys of a teacher entry that say how it gets its inputs (not model arguments).
PREPROCESS, INPUT_SIZE = 'preprocess', 'input_size'
#: Values of ``preprocess``: the student's inputs (the default), or its own preprocessor.
PREPROCESS_MODES = ('student', 'own')


class TeacherInputs(nn.Module):
    """How one teacher gets its inputs, when they are not the student's.

    Kept out of the distiller's modules (it holds a preprocessor of the
    teacher or of the student, registered there already).

    Args:
        preprocessor: The teacher's own data preprocessor (``own=True``),
            else the shared (student's) one.
        own: Whether the teacher preprocesses the raw batch itself.
        size: ``(H, W)`` the teacher's inputs are resized to, if given.
    """

    def __init__(self, preprocessor: nn.Module, own: bool,
                 size: Optional[Sequence[int]] = None):
        super().__init__()
        self.preprocessor = preprocessor
        self.own = own
        self.size = None if size is None else tuple(int(s) for s in size)

    def _resize(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.size is None or tuple(inputs.shape[-2:]) == self.size:
            return inputs
        return F.interpolate(inputs, size=self.size, mode='bilinear', align_corners=False)

    def prepare(self, inputs: torch.Tensor, data_samples, raw: Optional[dict]
                ) -> Tuple[torch.Tensor, object]:
        """The teacher's inputs and data samples in a step, from the student's
        preprocessed ones or (``own``) the raw batch; without a raw batch (the
        dry run) the given inputs."""
        if self.own and raw is not None:
            batch = self.forward(raw, False)
            return batch['inputs'], batch.get('data_samples')
        return self._resize(inputs), data_samples

    def forward(self, data: dict, training: bool = False) -> dict:
        """A raw batch as the teacher sees it (a data preprocessor's output)."""
        if self.own:
            data = dict(data, data_samples=copy.deepcopy(data.get('data_samples')))
            out = dict(self.preprocessor(data, False))
        else:
            out = dict(self.preprocessor(data, training))
        out['inputs'] = self._resize(out['inputs'])
        return out

    def extra_repr(self) -> str:
        return f'own={self.own}, size={self.size}'


def _batch_augments(preprocessor: nn.Module) -> bool:
    augments = getattr(preprocessor, 'batch_augments', None)
    return augments is not None and (not hasattr(augments, '__len__') or len(augments) > 0)


def build_teacher_inputs(entries: Mapping[str, dict], nets: Mapping[str, nn.Module],
                         shared: nn.Module) -> Dict[str, TeacherInputs]:
    """The :class:`TeacherInputs` of the teachers whose entries ask for them.

    Args:
        entries: Teacher name -> its config entry.
        nets: Teacher name -> its built net (its ``data_preprocessor`` is the
            one its entry and config give).
        shared: The distiller's (the student's) data preprocessor.

    Raises:
        DistillerConfigError: A teacher preprocesses the raw batch itself
            while the student's preprocessor mixes images (Mixup, CutMix):
            the teacher would see other images than the student.
    """
    found = {}
    for name, entry in entries.items():
        if not isinstance(entry, Mapping):
            continue
        mode = entry.get(PREPROCESS, 'student')
        if mode not in PREPROCESS_MODES:
            raise DistillerConfigError(f'teacher {name!r}: preprocess={mode!r}; use one of '
                                       f'{PREPROCESS_MODES}.')
        own = mode == 'own'
        size = entry.get(INPUT_SIZE)
        if not own and size is None:
            continue
        if size is not None and (not isinstance(size, (list, tuple)) or len(size) != 2):
            raise DistillerConfigError(f'teacher {name!r}: input_size must be (H, W); got '
                                       f'{size!r}.')
        preprocessor = getattr(nets[name], 'data_preprocessor', None) if own else shared
        if own and not isinstance(preprocessor, nn.Module):
            raise DistillerConfigError(f'teacher {name!r} ({type(nets[name]).__name__}) has no '
                                       'data_preprocessor to run on the raw batch.')
        if own and _batch_augments(shared):
            raise DistillerConfigError(
                f"teacher {name!r} preprocesses the raw batch itself, but the student's data "
                'preprocessor mixes images (batch_augments: Mixup, CutMix...): the teacher '
                'would see other images. Drop batch_augments, or give the teacher the '
                "student's inputs (preprocess='student').")
        found[name] = TeacherInputs(preprocessor, own, size)
    return found
