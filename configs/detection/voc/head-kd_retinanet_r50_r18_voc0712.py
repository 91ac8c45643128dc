# Dense-head logit distillation, RetinaNet: ResNet-50 teacher -> ResNet-18 student on VOC0712.
# The classification conv of the head runs once per FPN level (call_index = level); each
# level's per-anchor sigmoid scores are distilled with a binary KL at temperature tau
# (SigmoidKDLoss: summed over the classes, whose number is read from the student's head,
# averaged over anchors), one loss per level.
# The teacher stops after the last level's classification conv (no box branch, no NMS).
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
        cls_p3=dict(type='ModuleOutputs', source='bbox_head.retina_cls', call_index=0),
        cls_p4=dict(type='ModuleOutputs', source='bbox_head.retina_cls', call_index=1),
        cls_p5=dict(type='ModuleOutputs', source='bbox_head.retina_cls', call_index=2),
        cls_p6=dict(type='ModuleOutputs', source='bbox_head.retina_cls', call_index=3),
        cls_p7=dict(type='ModuleOutputs', source='bbox_head.retina_cls', call_index=4)),
    losses=dict(
        loss_cls_kd_p3=dict(type='SigmoidKDLoss', student='cls_p3', teacher='cls_p3', tau=2.0,
                            num_classes='<num_classes>', loss_weight=1.0),
        loss_cls_kd_p4=dict(type='SigmoidKDLoss', student='cls_p4', teacher='cls_p4', tau=2.0,
                            num_classes='<num_classes>', loss_weight=1.0),
        loss_cls_kd_p5=dict(type='SigmoidKDLoss', student='cls_p5', teacher='cls_p5', tau=2.0,
                            num_classes='<num_classes>', loss_weight=1.0),
        loss_cls_kd_p6=dict(type='SigmoidKDLoss', student='cls_p6', teacher='cls_p6', tau=2.0,
                            num_classes='<num_classes>', loss_weight=1.0),
        loss_cls_kd_p7=dict(type='SigmoidKDLoss', student='cls_p7', teacher='cls_p7', tau=2.0,
                            num_classes='<num_classes>', loss_weight=1.0)))
custom_hooks = [dict(type='mmkd.TeacherEvaluationHook')]
