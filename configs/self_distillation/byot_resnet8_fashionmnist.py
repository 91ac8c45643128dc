# Be Your Own Teacher: ResNet-8 on Fashion-MNIST with auxiliary classifiers on its first
# two stages, taught by its own deepest classifier. No teacher to train first.
# The terms and values of the authors' final code (pytorch-self-distillation-final/train.py):
# KD as a soft cross-entropy at tau 3 without tau^2 (kd_loss='soft_ce'), weight 0.3 (CE 0.7);
# hint 0.03 * ||Linear(pooled aux feature) - pooled deepest feature||_2 over the batch, on every
# auxiliary classifier but the one next to the deepest (here: layer1 only).
_base_ = ['../_base_/datasets/fashion_mnist_15k.py', '../_base_/schedules/sgd_cosine_4e.py',
          '../_base_/default_runtime.py']

model = dict(
    type='SelfDistiller',
    student=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py'),
    aux_sources=dict(layer1='backbone.layer1', layer2='backbone.layer2'),
    tau=3, kd_weight=0.3, hint_weight=0.03, kd_loss='soft_ce', hint_on=['layer1'],
    dry_run_shape=(1, 28, 28))
