# Probabilistic knowledge transfer (Passalis and Tefas, ECCV 2018): ResNet-56 teacher ->
# ResNet-8 student on Fashion-MNIST (the model-zoo pair and schedule). The batch's cosine
# affinity distributions of the penultimate (globally pooled) features are matched by KL;
# weight 30000 (the CRD benchmark's), plus the cross-entropy.
_base_ = ['../_base_/distill/resnet56_resnet8_fashionmnist.py']

model = dict(
    # The neck's globally pooled feature, the input of the classifier.
    recorders=dict(emb=dict(type='ModuleOutputs', source='neck', item=0)),
    losses=dict(loss_pkt=dict(type='PKTLoss', student='emb', teacher='emb',
                              loss_weight=30000.0)))
