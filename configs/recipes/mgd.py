# MGD (Yang et al., ECCV 2022): each FPN level of the student, 65 % of its positions masked at
# random, goes through a generation block (3x3 conv, ReLU, 3x3 conv) that must produce the
# teacher's level; squared error summed and divided by the batch size, weight 2e-5 (the
# authors' RetinaNet settings: alpha_mgd 2e-5, lambda_mgd 0.65; their Faster R-CNN students take
# 5e-7 and 0.45 on P2..P5, configs/detection/voc/mgd_faster-rcnn_r50_r18_voc0712.py). One
# connector and one loss per level; the generation blocks train with the student and are not
# exported.
task = 'detection'
description = 'MGD (Yang et al.): masked generation of every FPN level'
distill = dict(
    recorders=dict(fpn=dict(type='ModuleOutputs', source='<fpn>')),
    connectors=dict(fpn_gen=dict(type='MGDConnector', input='student.fpn', like='teacher.fpn',
                                 mask='spatial', mask_ratio=0.65)),
    losses=dict(loss_mgd=dict(type='MSELoss', student='fpn_gen', teacher='fpn',
                              reduction='batchmean', loss_weight=2e-5)))
