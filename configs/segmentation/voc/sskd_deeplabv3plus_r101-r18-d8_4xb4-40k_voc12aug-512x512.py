# Structured KD (Liu et al., CVPR 2019), pixel-wise + pair-wise terms: the pixel-wise KD of the
# decode head's logits (tau 1, weight 10, label 255 left out, sum / (H * W)) inherited from the
# PKD config, plus the pair-wise term on the decode head's last feature map before the
# classifier (the input of `decode_head.conv_seg`: `sep_bottleneck`'s output after the head's
# dropout, where the authors take their PSPNet's). Nodes are max-pooled windows of half the
# map's sides (2 x 2 nodes), pair-wise weight 0.5: the authors' run script (`--pool-scale 0.5
# --lambda-pa 0.5`). Their holistic (adversarial) term is not part of mmkd.
# DeepLabV3+ ResNet-101 teacher -> DeepLabV3+ ResNet-18 student, VOC 2012 + aug, 40k iters.
_base_ = ['./pkd_deeplabv3plus_r101-r18-d8_4xb4-40k_voc12aug-512x512.py']

model = dict(
    recorders=dict(feat=dict(type='ModuleInputs', source='decode_head.conv_seg')),
    losses=dict(loss_pa=dict(type='PairWiseSimilarityLoss', student='feat', teacher='feat',
                             scale=0.5, loss_weight=0.5)))
