# Deep Mutual Learning: two ResNet-8 learn from each other on Fashion-MNIST, no teacher.
# The zoo setting (15k training images, 4 epochs), as the ResNet-8 baseline it compares with.
_base_ = ['../_base_/datasets/fashion_mnist_15k.py', '../_base_/schedules/sgd_cosine_4e.py',
          '../_base_/default_runtime.py']

model = dict(
    type='MutualLearner',
    members=dict(resnet8_1=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py'),
                 resnet8_2=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py')),
    loss=dict(type='DMLLoss', tau=1.0, loss_weight=1.0),
    order='sequential')  # Algorithm 1 of the paper; 'synchronous' is one forward pass cheaper

# One optimizer wrapper per member, each with the schedule's SGD settings.
optim_wrapper = dict(constructor='CohortOptimWrapperConstructor')

# Top-1 of each member and of the ensemble (mean probabilities).
val_evaluator = dict(_delete_=True, type='CohortMetric',
                     metric=dict(type='mmpretrain.Accuracy', topk=(1, )))
test_evaluator = val_evaluator
