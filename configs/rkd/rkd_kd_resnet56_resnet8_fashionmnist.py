# Relational KD (distance- and angle-wise) on the pooled features, plus Hinton KD on the
# logits: ResNet-56 teacher -> ResNet-8 student on Fashion-MNIST.
# Train the teacher first: python tools/train.py configs/baselines/resnet56_fashionmnist.py
_base_ = ['../kd/kd_resnet56_resnet8_fashionmnist.py']

model = dict(
    recorders=dict(
        # The neck's globally pooled feature (the input of the classifier): 64-d on both nets.
        emb=dict(type='ModuleOutputs', source='neck', item=0)),
    losses=dict(
        loss_rkd=dict(type='RKDLoss', student='emb', teacher='emb', distance_weight=25,
                      angle_weight=50)))
