# Channel-wise distillation of the logits (the `cwd` recipe: tau 4, weight 3) from the 2x wider
# teacher to the student on the Fashion-MNIST scenes; data and schedule are the student's.
# The other methods on these scenes inherit this file and change the recipe. Train the
# teacher first (configs/segmentation/voc/README.md, "Fashion-MNIST scenes").
_base_ = ['./deeplabv3plus_r18w8-d8_fashion-scenes-64x64.py']
default_scope = 'mmkd'

teacher_checkpoint = 'work_dirs/zoo/seg_teacher_r18w16_fashion_scenes/iter_3000.pth'
model = dict(
    _delete_=True,
    type='SingleTeacherDistiller',
    student=dict(cfg_path='mmkd::segmentation/fashion_scenes/'
                 'deeplabv3plus_r18w8-d8_fashion-scenes-64x64.py'),
    teacher=dict(cfg_path='mmkd::segmentation/fashion_scenes/'
                 'deeplabv3plus_r18w16-d8_fashion-scenes-64x64.py',
                 checkpoint=teacher_checkpoint),
    recipe='cwd')
custom_hooks = [dict(type='TeacherEvaluationHook')]
