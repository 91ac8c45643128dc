# The student alone on the Fashion-MNIST scenes (tools/dataset_converters/make_fashion_scenes.py
# --size 64: 64-80 px scenes of real product photographs, six labelled classes, look-alike
# distractors left unlabelled, 255 on object borders). The synthetic-VOC student next door
# (ResNet-18 v1c at 1/8 width, BN, no ImageNet weights, 1200 iterations of 8 images) with the
# scenes' classes; mmseg's BaseSegDataset reads the VOC layout (JPEGImages,
# SegmentationClass, ImageSets/Segmentation).
_base_ = ['../synthetic_voc/deeplabv3plus_r18w8-d8_synthetic-voc-64x64.py']

num_classes = 7  # background + tshirt, trouser, dress, sandal, sneaker, bag
model = dict(decode_head=dict(num_classes=num_classes),
             auxiliary_head=dict(num_classes=num_classes))

data_root = 'data/fashion_scenes/VOC2007'
metainfo = dict(
    classes=('background', 'tshirt', 'trouser', 'dress', 'sandal', 'sneaker', 'bag'),
    palette=[[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128],
             [128, 0, 128], [0, 128, 128]])
train_dataloader = dict(dataset=dict(
    type='BaseSegDataset', metainfo=metainfo, data_root=data_root,
    ann_file='ImageSets/Segmentation/trainval.txt'))
val_dataloader = dict(dataset=dict(
    _delete_=True, _scope_='mmseg', type='BaseSegDataset', metainfo=metainfo,
    data_root=data_root, data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
    ann_file='ImageSets/Segmentation/test.txt', pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
