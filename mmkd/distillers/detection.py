"""Distillation between MMDetection detectors, RoI heads included."""
import inspect
from typing import List, Optional

import torch

from mmkd.recorders import BaseRecorder, ModuleOutputs
from mmkd.registry import MODELS

from .distiller import Distiller
from .errors import DistillerConfigError
from .teacher import FrozenTeacher

#: Records on modules under this path are computed on the student's RoIs.
ROI_HEAD = 'roi_head'
#: Name of the student record that holds the RoIs its box head ran on.
STUDENT_ROIS = 'student_rois'
#: Private teacher records of the RoI pass: its neck's features, its RPN head's output.
_FEATS, _RPN = '_roi_pass_feats', '_roi_pass_rpn'


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
class DetectionDistiller(Distiller):
    """A :class:`Distiller` for MMDetection detectors (one teacher).

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
    both nets classify the same boxes, row for row. That RoI pass is all
    this class adds to :class:`Distiller`. The RoIs are recorded
    on the student as ``student_rois`` (inputs of
    ``roi_head.bbox_roi_extractor``). Both detectors need an RPN and a
    ``StandardRoIHead``-like head (``_bbox_forward(x, rois)``).

    The dry run feeds ``DetDataSample``s holding image metadata, which
    two-stage detectors read in ``tensor`` mode. Inputs are those of the
    shared data preprocessor (the student's, batch-padded): teacher and
    student must normalise images alike.

    Its arguments are those of :class:`Distiller`: ``student``, ``teacher``,
    ``recorders``, ``student_recorders``, ``teacher_recorders``, ``connectors``,
    ``losses``, ``teacher_in_checkpoint``, ``teacher_norm``, ``dry_run_shape``,
    ``data_preprocessor``, ``init_cfg``.

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
                 teacher_recorders: Optional[dict] = None, **kwargs):
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
        super().__init__(student, teacher, recorders=recorders,
                         student_recorders=student_recorders,
                         teacher_recorders=teacher_recorders, **kwargs)
        self.roi_records = roi_names
        if roi_names:
            if list(self.frozen_teachers) != ['teacher']:
                raise DistillerConfigError(
                    f'records {roi_names} on the RoI head are distilled from one teacher: give '
                    'teacher=dict(...), not teachers=dict(...).')
            teacher = self.frozen_teachers['teacher']
            self._check_roi_capable()
            inputs = self.__dict__['_teacher_inputs'].get('teacher')
            if inputs is not None and inputs.size is not None:
                raise DistillerConfigError(
                    f'records {roi_names} on the RoI head are compared on the student\'s RoIs, '
                    'in the student\'s image coordinates, but the teacher resizes its inputs '
                    f'(input_size={inputs.size}): its features would be pooled at the wrong '
                    'places. Drop input_size, or distil the neck / RPN instead of the RoI head.')
            net = teacher.net
            teacher.records.add(_FEATS, ModuleOutputs(
                'neck' if getattr(net, 'with_neck', False) else 'backbone', clone=False))
            teacher.records.add(_RPN, ModuleOutputs('rpn_head', clone=False))

    def _check_roi_capable(self) -> None:
        for role, net in (('student', self.student), ('teacher', self.teacher)):
            roi_head = getattr(net, ROI_HEAD, None)
            forward = getattr(roi_head, '_bbox_forward', None)
            if (forward is None or getattr(net, 'rpn_head', None) is None
                    or 'stage' in inspect.signature(forward).parameters):
                raise DistillerConfigError(
                    f'records {self.roi_records} are on the RoI head, which is distilled on '
                    "the student's RoIs: that needs two-stage detectors with an RPN and a "
                    'StandardRoIHead-like roi_head (_bbox_forward(x, rois)); the '
                    f'{role} ({type(net).__name__}) has none. Record the neck or the RPN '
                    'head instead.')

    # -------------------------------------------------------------- hooks
    def dry_run_samples(self, inputs: torch.Tensor) -> list:
        return dry_run_samples(inputs)

    def run_teacher(self, teacher: FrozenTeacher, inputs: torch.Tensor, data_samples) -> None:
        """With RoI records, the first pass records everything else and ends
        right after the RPN head's forward (before proposals are decoded)."""
        if not self.roi_records:
            return super().run_teacher(teacher, inputs, data_samples)
        first = [n for n in teacher.records if n not in self.roi_records]
        with teacher.records.recording(stop_when_complete=True, names=first):
            teacher.net(inputs, data_samples, mode='tensor')

    def after_student_forward(self, data_samples) -> None:
        """The teacher's box head on the student's RoIs, over its own features."""
        if not self.roi_records:
            return
        teacher = self.frozen_teachers['teacher']
        feats = teacher.records[_FEATS]
        if feats.num_calls == 0:  # the teacher did not run (distillation switched off)
            return
        rois = self.student_records[STUDENT_ROIS].get()
        with torch.no_grad(), teacher.norm_context(self.training), \
                teacher.records.recording(names=self.roi_records):
            self.teacher.roi_head._bbox_forward(feats.get(), rois.detach())
        teacher.check_finite()
