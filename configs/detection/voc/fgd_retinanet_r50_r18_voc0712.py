# Focal and global distillation (FGD, Yang et al., CVPR 2022), RetinaNet: ResNet-50 teacher ->
# ResNet-18 student on VOC0712. The `fgd` recipe: every FPN level P3..P7, foreground /
# background imitation under the teacher's attention, attention and global-relation terms
# (the authors' RetinaNet constants); gradients clipped at norm 35 as in the authors' configs.
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
    recipe='fgd')
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
# The teacher's mAP, once before training and before testing.
custom_hooks = [dict(type='mmkd.TeacherEvaluationHook')]
