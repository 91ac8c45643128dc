# Fashion-MNIST with the first 15,000 of its 60,000 training images, all
# 10,000 test images: the setting mmkd's measured tables use, so that each of
# them trains on a 2-core CPU in minutes. Inherit fashion_mnist.py for all of it.
_base_ = ['./fashion_mnist.py']
train_dataloader = dict(dataset=dict(indices=15000))
