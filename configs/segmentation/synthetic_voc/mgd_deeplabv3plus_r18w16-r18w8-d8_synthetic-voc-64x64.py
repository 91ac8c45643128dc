# MGD of the last backbone stage (mask ratio 0.75, weight 2e-5, the authors' segmentation
# values) with CWD of the logits (tau 4, weight 3), as the authors' segmentation distiller;
# the 2x wider teacher, same data and schedule as the student alone (see
# configs/segmentation/voc/README.md).
_base_ = ['./cwd_deeplabv3plus_r18w16-r18w8-d8_synthetic-voc-64x64.py']

model = dict(
    recorders=dict(c5=dict(type='ModuleOutputs', source='backbone', item=3)),
    connectors=dict(c5_gen=dict(type='MGDConnector', input='student.c5', like='teacher.c5',
                                mask='spatial', mask_ratio=0.75)),
    losses=dict(loss_mgd=dict(type='MSELoss', student='c5_gen', teacher='c5',
                              reduction='batchmean', loss_weight=2e-5)))
