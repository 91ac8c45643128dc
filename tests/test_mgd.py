"""MGD (Yang et al., ECCV 2022): the connector and loss against the authors' computation,
the mask, and the configs on real mmseg segmentors."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from torch import nn

from mmkd.connectors import MGDConnector
from mmkd.losses import MSELoss
from mmkd.registry import MODELS

from conftest import REPO

pytestmark = pytest.mark.usefixtures('one_thread')


def authors_mgd(s, t, align, generation, alpha, ratio, mask):
    """The authors' FeatureLoss.forward (yzd-v/MGD, det/seg and cls variants), written out
    here with their operations: align, random 0/1 matrix, generation, MSE summed / N."""
    if align is not None:
        s = align(s)
    n, c, h, w = t.shape
    if mask == 'spatial':
        mat = torch.rand((n, 1, h, w))
        mat = torch.where(mat > 1 - ratio, 0, 1)
    else:
        mat = torch.rand((n, c, 1, 1))
        mat = torch.where(mat < ratio, 0, 1)
    new = generation(torch.mul(s, mat))
    return nn.MSELoss(reduction='sum')(new, t) / n * alpha


@pytest.mark.parametrize('mask,ratio,widths', [('spatial', 0.65, (8, 8)),
                                                ('spatial', 0.75, (8, 16)),
                                                ('channel', 0.15, (16, 16))])
def test_mgd_equals_the_authors_loss_on_the_same_draws(mask, ratio, widths):
    torch.manual_seed(0)
    s, t = torch.randn(3, widths[0], 6, 5), torch.randn(3, widths[1], 6, 5)
    connector = MGDConnector(widths[0], widths[1], mask=mask, mask_ratio=ratio).train()
    loss = MSELoss(reduction='batchmean', loss_weight=2e-5)
    torch.manual_seed(1)
    ours = loss(connector(s), t)
    torch.manual_seed(1)
    align = connector.align if widths[0] != widths[1] else None
    theirs = authors_mgd(s, t, align, connector.generation, 2e-5, ratio, mask)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
    # The 1x1 alignment exists only where the widths differ (theirs: `if s != t`).
    assert isinstance(connector.align, nn.Conv2d) == (widths[0] != widths[1])
    ours.backward()
    assert connector.generation[0].weight.grad.abs().sum() > 0


def test_the_mask_hides_its_ratio_in_training_and_nothing_in_eval():
    torch.manual_seed(0)
    connector = MGDConnector(4, 4, mask='spatial', mask_ratio=0.75)
    x = torch.ones(8, 4, 32, 32)
    kept = connector.random_mask(x)
    assert kept.shape == (8, 1, 32, 32)
    assert kept.mean().item() == pytest.approx(0.25, abs=0.02)
    channel = MGDConnector(4, 4, mask='channel', mask_ratio=0.5).random_mask(
        torch.ones(64, 4, 2, 2))
    assert channel.shape == (64, 4, 1, 1) and channel.mean().item() == pytest.approx(0.5, abs=0.1)
    connector.eval()
    with torch.no_grad():
        torch.testing.assert_close(connector(x), connector.generation(x))
    with pytest.raises(ValueError, match="mask must be one of \\('spatial', 'channel'\\)"):
        MGDConnector(4, 4, mask='pixels')
    with pytest.raises(ValueError, match='share masked'):
        MGDConnector(4, 4, mask_ratio=1.0)


def test_segmentation_mgd_config_trains_its_generation_block():
    # The synthetic-VOC config, with its teacher untrained: the connector's channels come
    # from the two backbones (64 -> 128 at widths 8 and 16) and its block learns.
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'segmentation', 'synthetic_voc',
                                   'mgd_deeplabv3plus_r18w16-r18w8-d8_synthetic-voc-64x64.py'))
    cfg.model.teacher.checkpoint = None
    model = MODELS.build(cfg.model)
    gen = model.connectors['c5_gen']
    assert isinstance(gen, MGDConnector) and gen.mask_ratio == 0.75
    assert (gen.align.in_channels, gen.align.out_channels) == (64, 128)
    assert sorted(model.distill_losses) == ['loss_cwd', 'loss_mgd']
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64),
                                             ori_shape=(64, 64)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 21, (1, 64, 64)))
        samples.append(sample)
    losses = model.train()(torch.randn(2, 3, 64, 64), samples, mode='loss')
    assert losses['loss_mgd'] > 0 and losses['loss_mgd'].requires_grad
    losses['loss_mgd'].backward()
    assert gen.generation[2].weight.grad.abs().sum() > 0
