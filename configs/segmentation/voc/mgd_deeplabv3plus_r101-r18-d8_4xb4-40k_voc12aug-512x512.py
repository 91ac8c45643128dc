# Masked generative distillation (MGD, Yang et al., ECCV 2022) for segmentation: the student's
# last backbone stage (512 channels), 75 % of its positions masked, aligned by a 1x1 conv and
# passed through a generation block, must produce the teacher's last stage (2048 channels);
# squared error summed / batch size, weight 2e-5. With it, as the authors' segmentation
# distiller (use_logit=True), CWD of the logits (tau 4, weight 3), inherited from the CWD config.
# DeepLabV3+ ResNet-101 teacher -> DeepLabV3+ ResNet-18 student, VOC 2012 + aug, 40k iters.
_base_ = ['./cwd_deeplabv3plus_r101-r18-d8_4xb4-40k_voc12aug-512x512.py']

model = dict(
    recorders=dict(c5=dict(type='ModuleOutputs', source='backbone', item=3)),
    connectors=dict(
        _delete_=True, c5_gen=dict(type='MGDConnector', input='student.c5', like='teacher.c5',
                                   mask='spatial', mask_ratio=0.75)),
    losses=dict(loss_mgd=dict(type='MSELoss', student='c5_gen', teacher='c5',
                              reduction='batchmean', loss_weight=2e-5)))
