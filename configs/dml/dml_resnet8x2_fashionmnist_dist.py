# Distributed DML: the ResNet-8 pair with one member per process.
#   bash tools/dist_train.sh configs/dml/dml_resnet8x2_fashionmnist_dist.py 2
# Each process trains its member on the same batches and the processes exchange only the
# (batch x classes) probabilities of each step; one checkpoint holds the whole cohort.
_base_ = ['./dml_resnet8x2_fashionmnist.py']

runner_type = 'CohortRunner'  # no DDP, no weight broadcast, cohort-wide checkpoints
# All members update from the same predictions: the processes run in parallel.
# ('sequential' works too, but then each process waits for the previous member's update.)
model = dict(distributed=True, order='synchronous')

# Every process must see the same samples, in the same order and with the same random
# augmentation: no split of the data between processes, augmentation in the main process
# (dataloader workers are seeded by rank).
train_dataloader = dict(num_workers=0, persistent_workers=False,
                        sampler=dict(type='SharedSampler', shuffle=True))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      sampler=dict(type='SharedSampler', shuffle=False))
test_dataloader = val_dataloader
