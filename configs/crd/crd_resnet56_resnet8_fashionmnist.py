# CRD (contrastive representation distillation): ResNet-56 teacher -> ResNet-8 student on
# Fashion-MNIST (15,000 training images, 4 epochs). CE + 0.8 * CRD, no KD (the authors'
# -a 0 -b 0.8).
_base_ = ['../_base_/distill/resnet56_resnet8_fashionmnist.py']

model = dict(
    # The globally pooled penultimate feature of each net (64-d on both).
    recorders=dict(feat=dict(type='ModuleOutputs', source='neck', item=0)),
    # Linear -> L2 normalisation to 128-d, one trainable head per net (not exported).
    connectors=dict(
        embed_s=dict(type='EmbedConnector', input='student.feat', out_channels=128),
        embed_t=dict(type='EmbedConnector', input='teacher.feat', out_channels=128)),
    losses=dict(loss_crd=dict(
        type='CRDLoss', student='embed_s', teacher='embed_t',
        num_samples=15000,  # one memory row per training image
        # The paper's 16384 does not fit: a class leaves ~13,500 other-class images to draw
        # from. 4096 keeps the CIFAR-100 ratio K / N (16384 / 50000 = 0.33 -> 0.27) and draws
        # without replacement, as the authors' CIFAR-100 code does.
        num_negatives=4096,
        temperature=0.07, momentum=0.5, feat_dim=128, negatives='other_classes',
        loss_weight=0.8)))
custom_hooks = [dict(type='TeacherEvaluationHook'),
                # Gives the memory the training labels (negatives from other classes).
                dict(type='ContrastMemoryHook')]
