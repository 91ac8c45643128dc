# The student of resnet18_my_dataset.py distilled from the fine-tuned teacher of
# resnet50_my_dataset.py, with Hinton's KD (the distillation part of mmkd's KD configs).
_base_ = ['./resnet18_my_dataset.py']
model = dict(
    _delete_=True,  # the student's classifier becomes the distiller's student
    _scope_='mmkd',  # mmkd's types by their bare names; the runtime's scope is mmpretrain
    type='SingleTeacherDistiller',
    student=dict(cfg_path='{{fileDirname}}/resnet18_my_dataset.py'),
    teacher=dict(cfg_path='{{fileDirname}}/resnet50_my_dataset.py',
                 checkpoint='work_dirs/resnet50_my_dataset/epoch_30.pth'),
    recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
    losses=dict(loss_kd=dict(type='KDLoss', student='logits', teacher='logits', tau=4,
                             loss_weight=0.9)))
# The teacher's accuracy on the validation set, once, beside the student's.
custom_hooks = [dict(type='mmkd.TeacherEvaluationHook')]
