# Channel-wise distillation (Shu et al., ICCV 2021) of the decode head's logits:
# DeepLabV3+ ResNet-101 teacher -> DeepLabV3+ ResNet-18 student, VOC 2012 + aug, 40k iters.
_base_ = ['./ofd_deeplabv3plus_r101-r18-d8_4xb4-40k_voc12aug-512x512.py']

model = dict(
    recorders=dict(
        _delete_=True, logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
    connectors=None,
    # tau and the weight of the paper's logit distillation.
    losses=dict(_delete_=True, loss_cwd=dict(type='ChannelWiseDivergence', student='logits',
                                             teacher='logits', tau=4.0, loss_weight=3.0)),
    # The teacher in eval mode (stored BN statistics), as the CWD and SKD authors' code; the
    # OFD config inherited here runs it on batch statistics.
    teacher_norm='eval')
