# ResNet-8 trained alone, with the knowledge-quantification hook (Cheng et al., CVPR 2020).
_base_ = ['../baselines/resnet8_fashionmnist.py']

# The knowledge-quantification setting (shared by the three configs of this folder):
# 5,000 training images, 5 epochs (1 warm-up + 4 cosine), the hook measuring every epoch.
max_epochs = 5
train_dataloader = dict(dataset=dict(indices=5000))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, T_max=max_epochs - 1, eta_min=0,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [dict(type='TeacherEvaluationHook'),
                dict(type='KnowledgeQuantificationHook', layer='backbone.layer3')]
