# PKD across detector families (Cao et al., NeurIPS 2022: the Pearson correlation ignores the
# magnitude differences between heterogeneous detectors' FPNs): a RetinaNet ResNet-50 teacher
# -> a Faster R-CNN ResNet-18 student on VOC0712. Levels are paired by stride: the student's
# FPN gives P2..P6, the teacher's P3..P7, so the shared P3..P6 are distilled (student neck
# outputs 1..4 against teacher outputs 0..3), weight 6 (the authors' Faster R-CNN setting).
# Train the teacher first: python tools/train.py mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py
_base_ = ['./faster-rcnn_r18_fpn_1x_voc0712.py']

teacher_checkpoint = 'work_dirs/retinanet_r50_fpn_1x_voc0712/epoch_4.pth'
levels = ('p3', 'p4', 'p5', 'p6')
model = dict(
    _delete_=True,
    _scope_='mmkd',
    type='DetectionDistiller',
    student=dict(cfg_path='mmkd::detection/voc/faster-rcnn_r18_fpn_1x_voc0712.py'),
    teacher=dict(cfg_path='mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py',
                 checkpoint=teacher_checkpoint),
    student_recorders={p: dict(type='ModuleOutputs', source='neck', item=i + 1)
                       for i, p in enumerate(levels)},
    teacher_recorders={p: dict(type='ModuleOutputs', source='neck', item=i)
                       for i, p in enumerate(levels)},
    losses={f'loss_pkd_{p}': dict(type='PKDLoss', student=p, teacher=p, loss_weight=6.0)
            for p in levels})
custom_hooks = [dict(type='mmkd.TeacherEvaluationHook')]
