# Masked generative distillation (MGD, Yang et al., ECCV 2022), Faster R-CNN: ResNet-50 teacher
# -> ResNet-18 student on VOC0712. The `mgd` recipe's parts (generation block, loss) with the
# authors' two-stage settings: the FPN levels P2..P5 (their fpn_convs 0..3; not the max-pooled
# P6), 45 % of the positions masked, weight 5e-7; gradients clipped at norm 35 as in their
# configs.
# Train the teacher first: python tools/train.py mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py
_base_ = ['./fpn_faster-rcnn_r50_r18_voc0712.py']

levels = ('p2', 'p3', 'p4', 'p5')
# The student / teacher pair of the base config; its records and losses give way to the recipe's
# generation blocks and losses, one per level.
model = dict(
    recorders=dict(_delete_=True,
                   **{p: dict(type='ModuleOutputs', source='neck', item=i)
                      for i, p in enumerate(levels)}),
    losses=dict(_delete_=True,
                **{f'loss_mgd_{p}': dict(type='MSELoss', student=f'{p}_gen', teacher=p,
                                         reduction='batchmean', loss_weight=5e-7)
                   for p in levels}),
    connectors={f'{p}_gen': dict(type='MGDConnector', input=f'student.{p}', like=f'teacher.{p}',
                                 mask='spatial', mask_ratio=0.45) for p in levels})
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
