# The measured run: channel-wise distillation of the logits (tau 4, weight 3, as in the VOC
# configs) from the 2x wider teacher to the student, same data and schedule as the student
# alone. Train the teacher first (see configs/segmentation/voc/README.md).
_base_ = ['./deeplabv3plus_r18w8-d8_synthetic-voc-64x64.py']
default_scope = 'mmkd'

teacher_checkpoint = 'work_dirs/zoo/seg_teacher_r18w16_synthetic_voc/iter_2000.pth'
model = dict(
    _delete_=True,
    type='SingleTeacherDistiller',
    student=dict(cfg_path='mmkd::segmentation/synthetic_voc/'
                 'deeplabv3plus_r18w8-d8_synthetic-voc-64x64.py'),
    teacher=dict(cfg_path='mmkd::segmentation/synthetic_voc/'
                 'deeplabv3plus_r18w16-d8_synthetic-voc-64x64.py',
                 checkpoint=teacher_checkpoint),
    recorders=dict(logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
    losses=dict(loss_cwd=dict(type='ChannelWiseDivergence', student='logits',
                              teacher='logits', tau=4.0, loss_weight=3.0)))
custom_hooks = [dict(type='TeacherEvaluationHook')]
