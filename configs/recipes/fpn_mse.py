# FPN feature imitation for detectors: MSE between the student's and the teacher's FPN
# outputs, one record and one loss per level (fpn_p3 .. fpn_p7 for RetinaNet, named by
# stride), as configs/detection/voc/fpn_*.py. The teacher runs its backbone and neck only.
# FPNs of other widths need a connector: connectors=dict(fpn_s=dict(type='ConvBNConnector',
# input='student.fpn', like='teacher.fpn')) and student='fpn_s'.
task = 'detection'
description = 'FPN feature MSE, one loss per level (one- and two-stage detectors)'
distill = dict(
    recorders=dict(fpn=dict(type='ModuleOutputs', source='<fpn>')),
    losses=dict(loss_fpn=dict(type='MSELoss', student='fpn', teacher='fpn', loss_weight=1.0)))
