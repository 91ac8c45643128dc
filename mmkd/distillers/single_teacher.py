"""One frozen teacher, one student."""
import warnings
from contextlib import nullcontext
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from mmkd.recorders import RecorderGroup
from mmkd.registry import MODELS
from .base import BaseDistiller, DistillerConfigError
from .builder import build_model_from_cfg, load_teacher_checkpoint, model_cfg_from
from .norm_mode import TEACHER_NORM_MODES, batch_statistics


@MODELS.register_module()
class SingleTeacherDistiller(BaseDistiller):
    """Distils a frozen, pre-trained teacher into a student.

    The teacher is built from its config, loaded from its checkpoint,
    frozen and kept in eval mode. Each training step runs it under
    ``no_grad`` only as far as the recorded modules (a backbone-only
    distillation never runs the teacher's head, and the teacher never
    computes a loss), then runs the student's own ``loss`` and adds each
    distillation loss under its name, so MMEngine logs every term.
    ``predict``/``tensor`` run the student: ``tools/test.py`` and all
    evaluators work unchanged.

    The teacher is not a registered submodule: it is not in the optimizer,
    not seen by DDP (no ``find_unused_parameters``), and not in checkpoints
    unless ``teacher_in_checkpoint=True``; on resume it is loaded again
    from its own file.

    Args:
        student: Student model dict or ``dict(cfg_path=...)``.
        teacher: ``dict(cfg_path=..., checkpoint=...)`` or a model dict with
            ``checkpoint``.
        teacher_recorders: Recorders of the teacher only.
        teacher_in_checkpoint: Save the teacher's weights in checkpoints.
        teacher_norm: ``'eval'`` (stored BN statistics) or ``'batch_stats'``:
            during training steps the teacher's BN layers use the batch's
            statistics (OFD's Table 8), without changing the stored ones.
        recorders, student_recorders, connectors, losses, dry_run_shape,
        data_preprocessor, init_cfg: see :class:`BaseDistiller`.

    Example (config)::

        model = dict(
            type='SingleTeacherDistiller',
            student=dict(cfg_path='mmkd::models/resnet20_fashionmnist.py'),
            teacher=dict(cfg_path='mmkd::models/resnet56_fashionmnist.py',
                         checkpoint='work_dirs/teacher/best.pth'),
            recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
            losses=dict(loss_kd=dict(type='KDLoss', student='logits',
                                     teacher='logits', tau=4, loss_weight=0.9)))
    """

    def __init__(self, student: dict, teacher: Optional[dict] = None,
                 recorders: Optional[dict] = None, student_recorders: Optional[dict] = None,
                 teacher_recorders: Optional[dict] = None, connectors: Optional[dict] = None,
                 losses: Optional[dict] = None, teacher_in_checkpoint: bool = False,
                 teacher_norm: str = 'eval', dry_run_shape: Optional[Sequence[int]] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(student, recorders, student_recorders, connectors, losses,
                         dry_run_shape, data_preprocessor, init_cfg)
        if teacher is None:
            raise DistillerConfigError(
                'SingleTeacherDistiller needs teacher=dict(cfg_path=<teacher config>, '
                'checkpoint=<teacher weights>).')
        if teacher_norm not in TEACHER_NORM_MODES:
            raise DistillerConfigError(f'teacher_norm={teacher_norm!r}: use one of '
                                       f'{TEACHER_NORM_MODES}.')
        self.teacher_norm = teacher_norm
        checkpoint = teacher.get('checkpoint', '__missing__')
        teacher_cfg, scope = model_cfg_from(teacher, 'teacher')
        net = build_model_from_cfg(teacher_cfg, scope)
        if checkpoint == '__missing__':
            raise DistillerConfigError(
                'teacher has no checkpoint: add checkpoint=<path to the trained teacher> '
                '(checkpoint=None distils from an untrained teacher, for tests only).')
        if checkpoint is None:
            warnings.warn('teacher checkpoint=None: the teacher is randomly initialised.')
            if hasattr(net, 'init_weights'):
                net.init_weights()
        else:
            load_teacher_checkpoint(net, checkpoint)
        self.teacher_checkpoint = checkpoint
        self.teacher_in_checkpoint = teacher_in_checkpoint
        net.eval()
        net.requires_grad_(False)
        # Kept out of _modules on purpose (see the class docstring).
        self.__dict__['_teacher'] = net
        self.teacher_records = RecorderGroup(
            net, {**self._shared_recorders, **dict(teacher_recorders or {})}, 'teacher')
        self._register_state_dict_hook(SingleTeacherDistiller._add_teacher_state)
        self._register_load_state_dict_pre_hook(self._load_teacher_state, with_module=False)
        self._setup_distillation()

    @property
    def teacher(self) -> nn.Module:
        return self.__dict__['_teacher']

    def teacher_groups(self) -> Dict[str, RecorderGroup]:
        return {'teacher': self.teacher_records} if len(self.teacher_records) else {}

    @torch.no_grad()
    def run_teachers(self, inputs: torch.Tensor, data_samples=None) -> None:
        norm_mode = batch_statistics(self.teacher) if (
            self.teacher_norm == 'batch_stats' and self.training) else nullcontext()
        with norm_mode, self.teacher_records.recording(stop_when_complete=True):
            self.teacher(inputs, data_samples, mode='tensor')

    def run_teachers_for_dry_run(self, prefix: str, x: torch.Tensor) -> None:
        self.teacher(x, None, mode='tensor')

    # -------------------------------------------------------------- plumbing
    def _apply(self, fn, *args, **kwargs):
        """Device and dtype moves (``.to``, ``.cuda``) reach the teacher too."""
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True) -> 'SingleTeacherDistiller':
        super().train(mode)
        self.teacher.eval()
        return self

    @staticmethod
    def _add_teacher_state(module, state_dict, prefix, _local_metadata):
        if module.teacher_in_checkpoint:
            for key, value in module.teacher.state_dict().items():
                state_dict[f'{prefix}teacher.{key}'] = value
        return state_dict

    def _load_teacher_state(self, state_dict, prefix, *_args) -> None:
        """Take ``teacher.*`` keys (if a checkpoint has them) for the teacher."""
        head = f'{prefix}teacher.'
        keys = [k for k in state_dict if k.startswith(head)]
        if keys:
            self.teacher.load_state_dict({k[len(head):]: state_dict.pop(k) for k in keys})
