# Semi-supervised DML: a quarter of the 15k training images keep their labels; the members
# learn the labelled ones from the labels and all of them from each other.
_base_ = ['./dml_resnet8x2_fashionmnist.py']

_labelled_data = {{_base_.train_dataloader.dataset}}
train_dataloader = dict(dataset=dict(
    _delete_=True, type='PartiallyLabeledDataset', labeled_fraction=0.25, seed=0,
    dataset=_labelled_data))
