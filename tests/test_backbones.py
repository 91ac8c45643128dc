"""mmkd's backbones: shapes, stage outputs, freezing and parameter counts."""
import pytest
import torch
from mmpretrain.registry import MODELS as PRETRAIN_MODELS

from mmkd.models import CIFARVGG, CIFARResNet, WideResNet


def classifier_params(backbone: dict, num_classes: int) -> float:
    # In mmpretrain's scope whatever an earlier test left as the default scope.
    net = PRETRAIN_MODELS.build(dict(
        _scope_='mmpretrain', type='ImageClassifier', backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=PRETRAIN_MODELS.build(backbone).out_channels[-1])))
    return sum(p.numel() for p in net.parameters()) / 1e6


@pytest.mark.parametrize('backbone, classes, published', [
    (dict(type='mmkd.CIFARResNet', depth=20), 10, 0.27),
    (dict(type='mmkd.CIFARResNet', depth=56), 10, 0.86),
    (dict(type='mmkd.CIFARResNet', depth=110), 10, 1.7),
    (dict(type='mmkd.CIFARResNet', depth=32, arch='x4'), 100, 7.4),
    (dict(type='mmkd.WideResNet', depth=40, widen_factor=2), 100, 2.2),
])
def test_parameter_counts_match_the_papers(backbone, classes, published):
    count = classifier_params(backbone, classes)
    # Published figures are rounded to 2 significant digits.
    assert abs(count - published) / published < 0.03, (backbone, count, published)


@pytest.mark.parametrize('depth', [8, 14, 20, 32, 44, 56, 110])
def test_cifar_resnet_depths_have_6k_plus_2_layers(depth):
    net = CIFARResNet(depth=depth, in_channels=1)
    convs = [m for n, m in net.named_modules()
             if isinstance(m, torch.nn.Conv2d) and 'downsample' not in n]
    assert len(convs) + 1 == depth  # + the classifier's linear layer


def test_stage_shapes_and_out_indices_on_one_channel_images():
    net = CIFARResNet(depth=20, in_channels=1, out_indices=(0, 1, 2))
    outs = net(torch.rand(2, 1, 28, 28))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 28, 28), (2, 32, 14, 14), (2, 64, 7, 7)]
    assert CIFARResNet(depth=8, out_indices=(-1, ))(torch.rand(1, 3, 32, 32))[0].shape == \
        (1, 64, 8, 8)
    wrn = WideResNet(depth=16, widen_factor=2, in_channels=1, out_indices=(0, 2))
    assert [tuple(o.shape) for o in wrn(torch.rand(2, 1, 28, 28))] == [(2, 32, 28, 28),
                                                                       (2, 128, 7, 7)]
    vgg = CIFARVGG(depth=8, in_channels=1, out_indices=(0, 4))
    assert [tuple(o.shape) for o in vgg(torch.rand(2, 1, 28, 28))] == [(2, 64, 28, 28),
                                                                       (2, 512, 2, 2)]
    for depth in (11, 13):
        assert CIFARVGG(depth=depth)(torch.rand(1, 3, 32, 32))[0].shape == (1, 512, 2, 2)


def test_frozen_stages_get_no_grad_and_stay_in_eval():
    net = CIFARResNet(depth=8, frozen_stages=1)
    net.init_weights()
    net.train()
    assert not any(p.requires_grad for p in net.stem.parameters())
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters())
    assert not net.layer1.training and net.layer2.training


@pytest.mark.parametrize('bad, message', [
    (dict(depth=21), '6k \\+ 2'),
    (dict(depth=20, out_indices=(3, )), 'out_indices'),
    (dict(depth=20, arch='x8'), 'arch'),
])
def test_bad_arguments_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        CIFARResNet(**bad)


def test_backbone_trains_inside_an_mmpretrain_classifier():
    net = PRETRAIN_MODELS.build(dict(
        _scope_='mmpretrain', type='ImageClassifier',
        backbone=dict(type='mmkd.CIFARResNet', depth=8, in_channels=1, widths=(4, 4, 8, 8)),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=8)))
    net.init_weights()
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(i % 10) for i in range(4)]
    losses = net(torch.rand(4, 1, 28, 28), samples, mode='loss')
    losses['loss'].backward()
    assert net.backbone.layer1[0].conv1.weight.grad is not None
