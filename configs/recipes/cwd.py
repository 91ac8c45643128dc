# Channel-wise distillation (Shu et al., ICCV 2021) of a segmentor's decode-head logits:
# each class map softmax-normalised over its positions, KL teacher -> student, tau 4,
# weight 3 (the paper's logit setting); logits of other sizes are resized to the larger.
task = 'segmentation'
description = 'channel-wise distillation (Shu et al.) of the decode-head logits'
distill = dict(
    recorders=dict(logits=dict(type='ModuleOutputs', source='<decode_logits>')),
    losses=dict(loss_cwd=dict(type='ChannelWiseDivergence', student='logits', teacher='logits',
                              tau=4.0, loss_weight=3.0)))
