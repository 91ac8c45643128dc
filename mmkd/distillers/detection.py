"""Distillation between MMDetection detectors, RoI heads included."""
import inspect
from contextlib import nullcontext
from typing import List, Optional, Sequence

import torch

from mmkd.recorders import BaseRecorder, ModuleOutputs, RecorderGroup
from mmkd.registry import MODELS
from .base import DistillerConfigError
from .norm_mode import batch_statistics
from .single_teacher import SingleTeacherDistiller

#: Records on modules under this path are computed on the student's RoIs.
ROI_HEAD = 'roi_head'
#: Name of the student record that holds the RoIs its box head ran on.
STUDENT_ROIS = 'student_rois'


class _TeacherStopped(Exception):
    """Raised from a hook to end the teacher's forward after its RPN head."""


def _stop_teacher(*_args) -> None:
    raise _TeacherStopped()


def _source(recorder) -> str:
    if isinstance(recorder, BaseRecorder):
        return recorder.source
    return str(recorder.get('source', '')) if isinstance(recorder, dict) else ''


def _under_roi_head(recorder) -> bool:
    source = _source(recorder)
    return source == ROI_HEAD or source.startswith(ROI_HEAD + '.')


def dry_run_samples(x: torch.Tensor) -> list:
    """``DetDataSample``s with the image metadata a detector's forward reads."""
    from mmdet.structures import DetDataSample
    h, w = (int(s) for s in x.shape[-2:])
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                batch_input_shape=(h, w), scale_factor=(1.0, 1.0))
    return [DetDataSample(metainfo=meta) for _ in range(x.shape[0])]


@MODELS.register_module()
class DetectionDistiller(SingleTeacherDistiller):
    """A :class:`SingleTeacherDistiller` for MMDetection detectors.

    Records work as for any model: the backbone's stages, the neck's levels
    (``ModuleOutputs(source='neck', item=i)``) and the dense heads' per-level
    convs (``source='bbox_head.retina_cls', call_index=i`` for level ``i``:
    mmdet's ``tensor`` mode calls ``bbox_head.forward`` directly, so hooks
    on the head itself never fire there). The teacher runs in ``tensor``
    mode and stops at the last module it is recorded on: feature
    distillation runs its backbone and neck only, dense-head distillation
    stops after the classification conv of the last level; its loss, box
    decoding and NMS never run.

    **RoI heads.** Records under ``roi_head`` (e.g. the box head's class
    logits, ``ModuleOutputs(source='roi_head.bbox_head', item=0)``) are
    compared on the *student's* RoIs: in training, the proposals the
    student's RoI head sampled. The teacher runs up to its RPN head (no
    proposal decoding, no NMS), and after the student's forward its box
    head runs once on the student's RoIs over its own neck features, so
    both nets classify the same boxes, row for row. The RoIs are recorded
    on the student as ``student_rois`` (inputs of
    ``roi_head.bbox_roi_extractor``). Both detectors need an RPN and a
    ``StandardRoIHead``-like head (``_bbox_forward(x, rois)``).

    The dry run feeds ``DetDataSample``s holding image metadata, which
    two-stage detectors read in ``tensor`` mode. Inputs are those of the
    shared data preprocessor (the student's, batch-padded): teacher and
    student must normalise images alike.

    Args:
        student, teacher, recorders, student_recorders, teacher_recorders,
        connectors, losses, teacher_in_checkpoint, teacher_norm,
        dry_run_shape, data_preprocessor, init_cfg: see
        :class:`SingleTeacherDistiller`.

    Example (config)::

        model = dict(
            type='DetectionDistiller',
            student=dict(cfg_path='mmkd::detection/voc/faster-rcnn_r18_fpn_1x_voc0712.py'),
            teacher=dict(cfg_path='mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py',
                         checkpoint='work_dirs/faster-rcnn_r50_fpn_1x_voc0712/epoch_4.pth'),
            recorders=dict(roi_cls=dict(type='ModuleOutputs', source='roi_head.bbox_head',
                                        item=0)),
            losses=dict(loss_roi_kd=dict(type='KDLoss', student='roi_cls', teacher='roi_cls',
                                         tau=2, loss_weight=1.0)))
    """

    def __init__(self, student: dict, teacher: Optional[dict] = None,
                 recorders: Optional[dict] = None, student_recorders: Optional[dict] = None,
                 teacher_recorders: Optional[dict] = None, connectors: Optional[dict] = None,
                 losses: Optional[dict] = None, teacher_in_checkpoint: bool = False,
                 teacher_norm: str = 'eval', dry_run_shape: Optional[Sequence[int]] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        teacher_side = {**dict(recorders or {}), **dict(teacher_recorders or {})}
        roi_names: List[str] = [n for n, c in teacher_side.items() if _under_roi_head(c)]
        student_recorders = dict(student_recorders or {})
        if roi_names:
            if STUDENT_ROIS in student_recorders or STUDENT_ROIS in dict(recorders or {}):
                raise DistillerConfigError(
                    f'record name {STUDENT_ROIS!r} is taken by DetectionDistiller (the RoIs of '
                    'the student); rename your record.')
            student_recorders[STUDENT_ROIS] = dict(
                type='ModuleInputs', source=f'{ROI_HEAD}.bbox_roi_extractor', arg_index=1)
        # Set before the parent's __init__, whose dry run reads them.
        self._roi_names = roi_names
        self._teacher_feats = None
        self._groups: dict = {}
        super().__init__(student, teacher, recorders, student_recorders, teacher_recorders,
                         connectors, losses, teacher_in_checkpoint, teacher_norm, dry_run_shape,
                         data_preprocessor, init_cfg)

    # -------------------------------------------------------------- checks
    def _setup_distillation(self) -> None:
        if self._roi_names:
            for role, net in (('student', self.student), ('teacher', self.teacher)):
                roi_head = getattr(net, ROI_HEAD, None)
                forward = getattr(roi_head, '_bbox_forward', None)
                if (forward is None or getattr(net, 'rpn_head', None) is None
                        or 'stage' in inspect.signature(forward).parameters):
                    raise DistillerConfigError(
                        f'records {self._roi_names} are on the RoI head, which is distilled on '
                        "the student's RoIs: that needs two-stage detectors with an RPN and a "
                        'StandardRoIHead-like roi_head (_bbox_forward(x, rois)); the '
                        f'{role} ({type(net).__name__}) has none. Record the neck or the RPN '
                        'head instead.')
        super()._setup_distillation()

    # -------------------------------------------------------------- groups
    def _teacher_feats_recorder(self) -> ModuleOutputs:
        """Private recorder of the teacher's neck (or backbone) outputs."""
        if 'feats' not in self._groups:
            source = 'neck' if getattr(self.teacher, 'with_neck', False) else 'backbone'
            recorder = ModuleOutputs(source, clone=False).attach(self.teacher, 'teacher')
            self._groups['feats'] = RecorderGroup(self.teacher, {'feats': recorder}, 'teacher')
        return self._groups['feats'].recorders['feats']

    def _subgroup(self, key: str, names: List[str], extra: Optional[dict] = None) -> RecorderGroup:
        """A group sharing the teacher's recorder objects (their clone choices
        and calibration), without attaching them again."""
        if key not in self._groups:
            group = RecorderGroup(self.teacher, {}, 'teacher')
            group.recorders.update({n: self.teacher_records.recorders[n] for n in names})
            group.recorders.update(extra or {})
            self._groups[key] = group
        return self._groups[key]

    def _first_pass_group(self) -> RecorderGroup:
        names = [n for n in self.teacher_records if n not in self._roi_names]
        return self._subgroup('first_pass', names, {'__feats': self._teacher_feats_recorder()})

    def _roi_group(self) -> RecorderGroup:
        return self._subgroup('roi', self._roi_names)

    def _norm_mode(self):
        return batch_statistics(self.teacher) if (
            self.teacher_norm == 'batch_stats' and self.training) else nullcontext()

    # -------------------------------------------------------------- running
    def _teacher_until_rpn(self, inputs: torch.Tensor, data_samples, group: RecorderGroup,
                           stop_when_complete: bool) -> None:
        """The teacher's ``tensor`` forward, recorded by ``group``, ended right
        after its RPN head's forward (before proposals are decoded)."""
        handle = self.teacher.rpn_head.register_forward_hook(_stop_teacher)
        try:
            with group.recording(stop_when_complete=stop_when_complete):
                self.teacher(inputs, data_samples, mode='tensor')
        except _TeacherStopped:
            pass
        finally:
            handle.remove()

    def _teacher_roi_pass(self, feats, rois: torch.Tensor) -> None:
        """The teacher's box head on ``rois`` (the student's), over its features."""
        self.teacher.roi_head._bbox_forward(feats, rois.detach())

    @torch.no_grad()
    def run_teachers(self, inputs: torch.Tensor, data_samples=None) -> None:
        if not self._roi_names:
            super().run_teachers(inputs, data_samples)
            return
        feats = self._teacher_feats_recorder()
        with self._norm_mode():
            self._teacher_until_rpn(inputs, data_samples, self._first_pass_group(), True)
        self._teacher_feats = feats.get()
        feats.reset()

    def compute_distill_losses(self, data_samples=None):
        """Runs the teacher's RoI head on the student's RoIs first (when records
        are on it), then every distillation loss."""
        if self._teacher_feats is not None:
            rois = self.student_records.recorders[STUDENT_ROIS].get()
            with torch.no_grad(), self._norm_mode(), self._roi_group().recording():
                self._teacher_roi_pass(self._teacher_feats, rois)
            self._teacher_feats = None
        return super().compute_distill_losses(data_samples)

    def run_student_for_dry_run(self, x: torch.Tensor) -> None:
        self.student(x, dry_run_samples(x), mode='tensor')

    def run_teachers_for_dry_run(self, prefix: str, x: torch.Tensor) -> None:
        samples = dry_run_samples(x)
        if not self._roi_names:
            self.teacher(x, samples, mode='tensor')
            return
        feats = self._teacher_feats_recorder()
        self._teacher_until_rpn(x, samples, self._groups['feats'], False)
        # The student's dry run ran its RoI head on its own proposals.
        self._teacher_roi_pass(feats.get(), self.student_records.recorders[STUDENT_ROIS].get())
