# PKD (Cao et al., NeurIPS 2022), Faster R-CNN: ResNet-50 teacher -> ResNet-18 student on
# VOC0712. The `pkd` recipe: every FPN level P2..P6 standardised per channel, MSE / 2, one loss
# per level, weight 6 (the authors' Faster R-CNN setting).
# Train the teacher first: python tools/train.py mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py
_base_ = ['./fpn_faster-rcnn_r50_r18_voc0712.py']

# The student / teacher pair of the base config; its records and losses give way to the recipe.
model = dict(recorders=dict(_delete_=True), losses=dict(_delete_=True), recipe='pkd')
