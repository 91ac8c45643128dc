# FPN feature distillation, RetinaNet: ResNet-50 teacher -> ResNet-18 student on VOC0712.
# MSE between the two FPNs' outputs (256 channels each), one record and one loss per level
# P3..P7, so each level is logged. The teacher runs its backbone and neck only.
# Train the teacher first: python tools/train.py mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py
_base_ = ['./retinanet_r18_fpn_1x_voc0712.py']

teacher_checkpoint = 'work_dirs/retinanet_r50_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    _delete_=True,
    _scope_='mmkd',
    type='DetectionDistiller',
    student=dict(cfg_path='mmkd::detection/voc/retinanet_r18_fpn_1x_voc0712.py'),
    teacher=dict(cfg_path='mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py',
                 checkpoint=teacher_checkpoint),
    recorders=dict(
        p3=dict(type='ModuleOutputs', source='neck', item=0),
        p4=dict(type='ModuleOutputs', source='neck', item=1),
        p5=dict(type='ModuleOutputs', source='neck', item=2),
        p6=dict(type='ModuleOutputs', source='neck', item=3),
        p7=dict(type='ModuleOutputs', source='neck', item=4)),
    losses=dict(
        loss_fpn_p3=dict(type='MSELoss', student='p3', teacher='p3', loss_weight=1.0),
        loss_fpn_p4=dict(type='MSELoss', student='p4', teacher='p4', loss_weight=1.0),
        loss_fpn_p5=dict(type='MSELoss', student='p5', teacher='p5', loss_weight=1.0),
        loss_fpn_p6=dict(type='MSELoss', student='p6', teacher='p6', loss_weight=1.0),
        loss_fpn_p7=dict(type='MSELoss', student='p7', teacher='p7', loss_weight=1.0)))
# The teacher's mAP, once before training and before testing.
custom_hooks = [dict(type='mmkd.TeacherEvaluationHook')]
