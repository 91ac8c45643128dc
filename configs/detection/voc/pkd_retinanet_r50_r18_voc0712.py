# PKD (Cao et al., NeurIPS 2022), RetinaNet: ResNet-50 teacher -> ResNet-18 student on VOC0712.
# The `pkd` recipe: every FPN level P3..P7 standardised per channel, MSE / 2 (one minus the
# Pearson correlation), one loss per level, weight 10 (the authors' RetinaNet setting).
# Train the teacher first: python tools/train.py mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py
_base_ = ['./fpn_retinanet_r50_r18_voc0712.py']

# The student / teacher pair of the base config; its records and losses give way to the recipe.
model = dict(recorders=dict(_delete_=True),
             losses=dict(_delete_=True, loss_pkd=dict(loss_weight=10.0)), recipe='pkd')
