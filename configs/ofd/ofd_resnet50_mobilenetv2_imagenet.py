# OFD's ImageNet teacher and schedule with another student: the paper (Table 4) and the
# authors' code (ImageNet/models/MobileNet.py, setup (b)) distil ResNet-50 into MobileNet v1,
# which mmpretrain does not have; this config distils it into mmpretrain's MobileNetV2, so
# its results are not the paper's row. The teacher's four stages are matched by
# MobileNetV2 features of the same strides
# (4, 8, 16, 32): the pre-ReLU6 features after layer2, layer3 and layer5 (the next block's
# expansion, before its ReLU6) and before the last conv's ReLU6.
_base_ = ['./ofd_resnet152_resnet50_imagenet.py']

model = dict(
    student=dict(cfg_path='mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py'),
    teacher=dict(cfg_path='mmpretrain::resnet/resnet50_8xb32_in1k.py',
                 checkpoint='checkpoints/resnet50_8xb32_in1k_20210831-ea4938fc.pth'),
    recorders=dict(_delete_=True),
    student_recorders=dict(feats=dict(type='StageFeatures',
                                      stages=['layer2', 'layer3', 'layer5', 'conv2'])),
    teacher_recorders=dict(feats=dict(type='StageFeatures')))
# MobileNetV2's schedule in mmpretrain: 0.045 per 256 images, weight decay 4e-5.
optim_wrapper = dict(optimizer=dict(lr=0.045, weight_decay=4e-5))
