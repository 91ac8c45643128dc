"""Several frozen teachers, one student."""
import warnings
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from mmkd.recorders import RecorderGroup
from mmkd.registry import MODELS
from .base import BaseDistiller, DistillerConfigError
from .builder import build_model_from_cfg, load_teacher_checkpoint, model_cfg_from


def build_frozen_teacher(cfg: dict, name: str) -> nn.Module:
    """Build teacher ``name`` from ``dict(cfg_path=..., checkpoint=...)``,
    load its weights, and freeze it in eval mode."""
    if not isinstance(cfg, dict):
        raise DistillerConfigError(f'teacher {name!r} must be dict(cfg_path=..., '
                                   f'checkpoint=...); got {type(cfg).__name__}.')
    checkpoint = cfg.get('checkpoint', '__missing__')
    if checkpoint == '__missing__':
        raise DistillerConfigError(
            f'teacher {name!r} has no checkpoint: add checkpoint=<path to the trained teacher> '
            '(checkpoint=None distils from an untrained teacher, for tests only).')
    model_cfg, scope = model_cfg_from(cfg, f'teacher {name!r}')
    net = build_model_from_cfg(model_cfg, scope)
    if checkpoint is None:
        warnings.warn(f'teacher {name!r} checkpoint=None: the teacher is randomly initialised.')
        if hasattr(net, 'init_weights'):
            net.init_weights()
    else:
        load_teacher_checkpoint(net, checkpoint)
    net.eval()
    net.requires_grad_(False)
    return net


@MODELS.register_module()
class MultiTeacherDistiller(BaseDistiller):
    """Distils several frozen, pre-trained teachers into one student.

    Each teacher has a name (``t1``, ``r56``...) that is also the prefix of
    its records in references: ``'r56.logits'`` is the record ``logits`` of
    teacher ``r56``. A loss argument may take one teacher's record (a
    feature loss names the teacher it learns from) or a list of records
    (``teacher=['r56.logits', 'r20.logits']``, e.g. for
    :class:`~mmkd.losses.MultiTeacherKDLoss`, which combines the teachers'
    soft targets).

    Teachers behave as in :class:`SingleTeacherDistiller`: frozen, in eval
    mode, not registered submodules (not in the optimizer, unseen by DDP, out
    of checkpoints unless ``teacher_in_checkpoint=True``), and each runs
    under ``no_grad`` only as far as its own records need; a teacher with no
    record does not run at all.

    Args:
        student: Student model dict or ``dict(cfg_path=...)``.
        teachers: Teacher name -> ``dict(cfg_path=..., checkpoint=...)``.
            Names must not contain ``'.'`` nor be ``'student'``.
        recorders: Recorders attached to the student and every teacher.
        teacher_recorders: Teacher name -> recorders of that teacher only.
        teacher_in_checkpoint: Save the teachers' weights in checkpoints
            (under ``teachers.<name>.``).
        student_recorders, connectors, losses, dry_run_shape,
        data_preprocessor, init_cfg: see :class:`BaseDistiller`.

    Example (config)::

        model = dict(
            type='MultiTeacherDistiller',
            student=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py'),
            teachers=dict(
                r56=dict(cfg_path='mmkd::models/resnet56_fashionmnist.py',
                         checkpoint='work_dirs/resnet56_fashionmnist/epoch_4.pth'),
                r20=dict(cfg_path='mmkd::models/resnet20_fashionmnist.py',
                         checkpoint='work_dirs/resnet20_fashionmnist/epoch_4.pth')),
            recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
            losses=dict(loss_kd=dict(type='MultiTeacherKDLoss', student='student.logits',
                                     teacher=['r56.logits', 'r20.logits'],
                                     combine='arithmetic', tau=4, loss_weight=0.9)))
    """

    def __init__(self, student: dict, teachers: Optional[Dict[str, dict]] = None,
                 recorders: Optional[dict] = None, student_recorders: Optional[dict] = None,
                 teacher_recorders: Optional[Dict[str, dict]] = None,
                 connectors: Optional[dict] = None, losses: Optional[dict] = None,
                 teacher_in_checkpoint: bool = False,
                 dry_run_shape: Optional[Sequence[int]] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(student, recorders, student_recorders, connectors, losses,
                         dry_run_shape, data_preprocessor, init_cfg)
        if not teachers or not isinstance(teachers, dict):
            raise DistillerConfigError(
                'MultiTeacherDistiller needs teachers=dict(<name>=dict(cfg_path=<teacher '
                'config>, checkpoint=<teacher weights>), ...).')
        for name in teachers:
            if not isinstance(name, str) or not name or '.' in name or name == 'student':
                raise DistillerConfigError(
                    f'teacher name {name!r} cannot prefix references; use a name without '
                    '"." other than "student" (e.g. "t1" or "r56").')
        teacher_recorders = dict(teacher_recorders or {})
        unknown = sorted(set(teacher_recorders) - set(teachers))
        if unknown:
            raise DistillerConfigError(f'teacher_recorders names teacher(s) {unknown}; the '
                                       f'teachers are {sorted(teachers)}.')
        nets, groups = {}, {}
        for name, cfg in teachers.items():
            nets[name] = build_frozen_teacher(cfg, name)
            groups[name] = RecorderGroup(
                nets[name], {**self._shared_recorders, **dict(teacher_recorders.get(name, {}))},
                name)
        # Kept out of _modules on purpose (see the class docstring).
        self.__dict__['_teachers'] = nets
        self.teacher_records: Dict[str, RecorderGroup] = groups
        self.teacher_checkpoints = {name: cfg.get('checkpoint') for name, cfg in teachers.items()}
        self.teacher_in_checkpoint = teacher_in_checkpoint
        self._register_state_dict_hook(MultiTeacherDistiller._add_teacher_state)
        self._register_load_state_dict_pre_hook(self._load_teacher_state, with_module=False)
        self._setup_distillation()

    @property
    def teachers(self) -> Dict[str, nn.Module]:
        """The teachers by name (frozen, eval mode)."""
        return self.__dict__['_teachers']

    def teacher_groups(self) -> Dict[str, RecorderGroup]:
        return {name: group for name, group in self.teacher_records.items() if len(group)}

    @torch.no_grad()
    def run_teachers(self, inputs: torch.Tensor, data_samples=None) -> None:
        for name, group in self.teacher_groups().items():
            with group.recording(stop_when_complete=True):
                self.teachers[name](inputs, data_samples, mode='tensor')

    def run_teachers_for_dry_run(self, prefix: str, x: torch.Tensor) -> None:
        self.teachers[prefix](x, None, mode='tensor')

    # -------------------------------------------------------------- plumbing
    def _apply(self, fn, *args, **kwargs):
        """Device and dtype moves (``.to``, ``.cuda``) reach the teachers too."""
        super()._apply(fn, *args, **kwargs)
        for net in self.teachers.values():
            net._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True) -> 'MultiTeacherDistiller':
        super().train(mode)
        for net in self.teachers.values():
            net.eval()
        return self

    @staticmethod
    def _add_teacher_state(module, state_dict, prefix, _local_metadata):
        if module.teacher_in_checkpoint:
            for name, net in module.teachers.items():
                for key, value in net.state_dict().items():
                    state_dict[f'{prefix}teachers.{name}.{key}'] = value
        return state_dict

    def _load_teacher_state(self, state_dict, prefix, *_args) -> None:
        """Take ``teachers.<name>.*`` keys (if a checkpoint has them) for the teachers."""
        for name, net in self.teachers.items():
            head = f'{prefix}teachers.{name}.'
            keys = [k for k in state_dict if k.startswith(head)]
            if keys:
                net.load_state_dict({k[len(head):]: state_dict.pop(k) for k in keys})
