# Hinton KD: ResNet-56 teacher -> ResNet-20 student on Fashion-MNIST.
# Train the teacher first: python tools/train.py configs/baselines/resnet56_fashionmnist.py
_base_ = ['../_base_/datasets/fashion_mnist_15k.py', '../_base_/schedules/sgd_cosine_4e.py',
          '../_base_/default_runtime.py']

# The last checkpoint of the teacher's baseline run (override with
# --cfg-options model.teacher.checkpoint=...).
teacher_checkpoint = 'work_dirs/resnet56_fashionmnist/epoch_4.pth'
model = dict(
    type='SingleTeacherDistiller',
    student=dict(cfg_path='mmkd::models/resnet20_fashionmnist.py'),
    teacher=dict(cfg_path='mmkd::models/resnet56_fashionmnist.py',
                 checkpoint=teacher_checkpoint),
    # The logits (head.fc of both nets, found by the recipe), KL at tau 4, weight 0.9.
    recipe='mmkd::recipes/kd.py',
    dry_run_shape=(1, 28, 28))
