# Focal and global distillation (FGD, Yang et al., CVPR 2022), Faster R-CNN: ResNet-50 teacher ->
# ResNet-18 student on VOC0712, with the authors' two-stage settings: the FPN levels P2..P5
# (their fpn_convs 0..3; not the max-pooled P6), temp 0.5, alpha 5e-5, beta 2.5e-5, gamma 5e-5,
# lambda 5e-7, one loss per level; gradients clipped at norm 35 as in their configs.
# Train the teacher first: python tools/train.py mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py
_base_ = ['./fpn_faster-rcnn_r50_r18_voc0712.py']

levels = ('p2', 'p3', 'p4', 'p5')
model = dict(
    recorders=dict(_delete_=True,
                   **{p: dict(type='ModuleOutputs', source='neck', item=i)
                      for i, p in enumerate(levels)}),
    losses=dict(_delete_=True,
                **{f'loss_fgd_{p}': dict(type='FGDLoss', student=p, teacher=p, temp=0.5,
                                         alpha_fgd=5e-5, beta_fgd=2.5e-5, gamma_fgd=5e-5,
                                         lambda_fgd=5e-7)
                   for p in levels}))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
