# The knowledge-quantification setting of configs/knowledge_quantification: 5,000 Fashion-MNIST
# training images, 5 epochs (1 warm-up + 4 cosine), the hook measuring the student every epoch
# at backbone.layer3. Defined once here so the compared runs cannot drift apart; the configs take
# these values with {{_base_.kq_*}} (their method base defines the same keys, so this file
# names its own).
kq_max_epochs = 5
kq_train_images = 5000
kq_param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, T_max=kq_max_epochs - 1, eta_min=0,
         convert_to_iter_based=True),
]
kq_custom_hooks = [dict(type='TeacherEvaluationHook'),
                   dict(type='KnowledgeQuantificationHook', layer='backbone.layer3')]
