# Masked generative distillation (MGD, Yang et al., ECCV 2022), RetinaNet: ResNet-50 teacher ->
# ResNet-18 student on VOC0712. The `mgd` recipe: every FPN level P3..P7 of the student, 65 %
# of its positions masked, generates the teacher's level (weight 2e-5, the authors' value);
# gradients clipped at norm 35 as in the authors' configs.
# Train the teacher first: python tools/train.py mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py
_base_ = ['./fpn_retinanet_r50_r18_voc0712.py']

# The student / teacher pair of the base config; its records and losses give way to the recipe.
model = dict(recorders=dict(_delete_=True), losses=dict(_delete_=True), recipe='mgd')
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
