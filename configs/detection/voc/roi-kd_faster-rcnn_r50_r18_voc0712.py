# Logit distillation, Faster R-CNN: ResNet-50 teacher -> ResNet-18 student on VOC0712.
# * RPN objectness, per FPN level: binary KL of the per-anchor sigmoid scores at tau
#   (SigmoidKDLoss, num_classes=1), one loss per level P2..P6.
# * RoI head: the teacher's box head classifies the RoIs the student's RoI head sampled
#   (DetectionDistiller runs it on them, over the teacher's own FPN features); Hinton KD on
#   the 21-way (20 classes + background) softmax, averaged over RoIs.
# The teacher runs backbone, neck, RPN head convs and its box head on the student's RoIs;
# never its proposal decoding, NMS or losses.
# Train the teacher first: python tools/train.py mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py
_base_ = ['./faster-rcnn_r18_fpn_1x_voc0712.py']

teacher_checkpoint = 'work_dirs/faster-rcnn_r50_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    _delete_=True,
    _scope_='mmkd',
    type='DetectionDistiller',
    student=dict(cfg_path='mmkd::detection/voc/faster-rcnn_r18_fpn_1x_voc0712.py'),
    teacher=dict(cfg_path='mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py',
                 checkpoint=teacher_checkpoint),
    recorders=dict(
        obj_p2=dict(type='ModuleOutputs', source='rpn_head.rpn_cls', call_index=0),
        obj_p3=dict(type='ModuleOutputs', source='rpn_head.rpn_cls', call_index=1),
        obj_p4=dict(type='ModuleOutputs', source='rpn_head.rpn_cls', call_index=2),
        obj_p5=dict(type='ModuleOutputs', source='rpn_head.rpn_cls', call_index=3),
        obj_p6=dict(type='ModuleOutputs', source='rpn_head.rpn_cls', call_index=4),
        roi_cls=dict(type='ModuleOutputs', source='roi_head.bbox_head', item=0)),
    losses=dict(
        loss_rpn_kd_p2=dict(type='SigmoidKDLoss', student='obj_p2', teacher='obj_p2', tau=2.0,
                            num_classes=1, loss_weight=1.0),
        loss_rpn_kd_p3=dict(type='SigmoidKDLoss', student='obj_p3', teacher='obj_p3', tau=2.0,
                            num_classes=1, loss_weight=1.0),
        loss_rpn_kd_p4=dict(type='SigmoidKDLoss', student='obj_p4', teacher='obj_p4', tau=2.0,
                            num_classes=1, loss_weight=1.0),
        loss_rpn_kd_p5=dict(type='SigmoidKDLoss', student='obj_p5', teacher='obj_p5', tau=2.0,
                            num_classes=1, loss_weight=1.0),
        loss_rpn_kd_p6=dict(type='SigmoidKDLoss', student='obj_p6', teacher='obj_p6', tau=2.0,
                            num_classes=1, loss_weight=1.0),
        loss_roi_kd=dict(type='KDLoss', student='roi_cls', teacher='roi_cls', tau=2.0,
                         loss_weight=1.0)))
custom_hooks = [dict(type='mmkd.TeacherEvaluationHook')]
