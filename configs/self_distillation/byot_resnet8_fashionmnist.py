# Be Your Own Teacher: ResNet-8 on Fashion-MNIST with auxiliary classifiers on its first
# two stages, taught by its own deepest classifier. No teacher to train first.
_base_ = ['../_base_/datasets/fashion_mnist_15k.py', '../_base_/schedules/sgd_cosine_4e.py',
          '../_base_/default_runtime.py']

model = dict(
    type='SelfDistiller',
    student=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py'),
    aux_sources=dict(layer1='backbone.layer1', layer2='backbone.layer2'),
    tau=3, kd_weight=0.3, hint_weight=0.03,  # the values of the authors' code
    dry_run_shape=(1, 28, 28))
