# PKD (Cao et al., NeurIPS 2022), RetinaNet: ResNet-50 teacher -> ResNet-18 student on VOC0712.
# The `pkd` recipe: every FPN level P3..P7 standardised per channel, MSE / 2 (one minus the
# Pearson correlation), one loss per level, weight 10 (the authors' RetinaNet setting).
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
    recipe='pkd',
    losses=dict(loss_pkd=dict(loss_weight=10.0)))
custom_hooks = [dict(type='mmkd.TeacherEvaluationHook')]
