# Masked generative distillation (MGD, Yang et al., ECCV 2022), RetinaNet: ResNet-50 teacher ->
# ResNet-18 student on VOC0712. The `mgd` recipe: every FPN level P3..P7 of the student, 65 %
# of its positions masked, generates the teacher's level (weight 2e-5, the authors' value).
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
    recipe='mgd')
# The teacher's mAP, once before training and before testing.
custom_hooks = [dict(type='mmkd.TeacherEvaluationHook')]
