# KD of the demo's pair, reading the teacher's logits from a cache (teacher-free epochs): 4 epochs
# of views for the 4-epoch schedule, the views seeded with the run's seed.
_base_ = ['mmkd::kd/kd_resnet20_resnet8_fashionmnist.py']
teacher_cache = dict(dir='work_dirs/teacher_cache/resnet20_fashionmnist', view_epochs=4)
