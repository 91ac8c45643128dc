# The model-zoo pair on its setting: ResNet-56 teacher -> ResNet-8 student, Fashion-MNIST
# (15k training images), the 4-epoch cosine schedule. A method config inherits this and adds
# its recorders, connectors and losses to `model`.
# Train the teacher first: python tools/train.py configs/baselines/resnet56_fashionmnist.py
_base_ = ['../datasets/fashion_mnist_15k.py', '../schedules/sgd_cosine_4e.py',
          '../default_runtime.py']

teacher_checkpoint = 'work_dirs/resnet56_fashionmnist/epoch_4.pth'
model = dict(
    type='SingleTeacherDistiller',
    student=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py'),
    teacher=dict(cfg_path='mmkd::models/resnet56_fashionmnist.py',
                 checkpoint=teacher_checkpoint),
    dry_run_shape=(1, 28, 28))
