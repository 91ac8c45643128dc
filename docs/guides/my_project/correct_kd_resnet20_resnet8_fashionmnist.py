# mmkd's ResNet-20 -> ResNet-8 KD config (the pair of `make demo`) with the loss of
# my_losses.py in place of KDLoss, and a feature loss through the connector of
# my_connectors.py. Run with my_project's parent folder on PYTHONPATH.
_base_ = ['mmkd::kd/kd_resnet20_resnet8_fashionmnist.py']
custom_imports = dict(imports=['my_project.my_losses', 'my_project.my_connectors'],
                      allow_failed_imports=False)
model = dict(
    recorders=dict(feat=dict(type='ModuleOutputs', source='backbone.layer3')),
    connectors=dict(
        feat_s=dict(type='MLPConnector', input='student.feat', like='teacher.feat')),
    losses=dict(
        loss_kd=dict(_delete_=True, type='CorrectTeacherKDLoss', student='logits',
                     teacher='logits', tau=4, loss_weight=0.9),
        loss_feat=dict(type='MSELoss', student='feat_s', teacher='feat', loss_weight=1.0)))
