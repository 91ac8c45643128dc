# Hinton KD, ResNet-56 -> ResNet-8, reading the teacher's logits from a cache (teacher-free
# epochs, mmkd.distillers.teacher_cache). Write the cache once, then train:
#   python tools/cache_teacher.py configs/kd/kd_resnet56_resnet8_fashionmnist_cached.py
#   python tools/train.py configs/kd/kd_resnet56_resnet8_fashionmnist_cached.py
# Without the first command the first 4 epochs run the teacher and write the cache.
_base_ = ['./kd_resnet56_resnet8_fashionmnist.py']

# One view of each image per epoch of the 4-epoch schedule. The views have their own seed, so
# runs of other seeds (the zoo's 0, 1, 2) share the cache: they differ in initialisation and
# order, not in the crops and flips they see.
teacher_cache = dict(dir='work_dirs/teacher_cache/resnet56_fashionmnist_15k', view_epochs=4,
                     seed=0)
