# PKD (Cao et al., NeurIPS 2022), Faster R-CNN: ResNet-50 teacher -> ResNet-18 student on
# VOC0712. The `pkd` recipe: every FPN level P2..P6 standardised per channel, MSE / 2, one loss
# per level, weight 6 (the authors' Faster R-CNN setting).
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
    recipe='pkd')
custom_hooks = [dict(type='mmkd.TeacherEvaluationHook')]
