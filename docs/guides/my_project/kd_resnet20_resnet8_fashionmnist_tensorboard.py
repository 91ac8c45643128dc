# mmkd's ResNet-20 -> ResNet-8 KD config, logged to TensorBoard as well as to the work dir's
# scalars.json (which mmkd's tools read).
_base_ = ['mmkd::kd/kd_resnet20_resnet8_fashionmnist.py']
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
