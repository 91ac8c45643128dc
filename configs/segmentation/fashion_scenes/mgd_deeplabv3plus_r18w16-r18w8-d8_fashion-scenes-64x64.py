# MGD + CWD on the Fashion-MNIST scenes, the authors' segmentation setting: the `cwd` recipe on
# the logits and the last backbone stage masked (75 % of positions) and regenerated at the
# teacher's width (weight 2e-5).
_base_ = ['./cwd_deeplabv3plus_r18w16-r18w8-d8_fashion-scenes-64x64.py']

model = dict(
    recorders=dict(c5=dict(type='ModuleOutputs', source='backbone', item=3)),
    connectors=dict(c5_gen=dict(type='MGDConnector', input='student.c5', like='teacher.c5',
                                mask='spatial', mask_ratio=0.75)),
    losses=dict(loss_mgd=dict(type='MSELoss', student='c5_gen', teacher='c5',
                              reduction='batchmean', loss_weight=2e-5)))
