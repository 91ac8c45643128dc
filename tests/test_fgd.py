"""FGD (Yang et al., CVPR 2022): the loss against the authors' FeatureLoss written out again,
where gradients go, and the recipe's config on a real tiny RetinaNet distiller."""
import copy
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.model import constant_init, kaiming_init
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmengine.structures import InstanceData
from torch import nn

from mmkd.distillers import build_model_from_cfg, load_config
from mmkd.losses import FGDLoss, fgd
from mmkd.losses.fgd import box_masks

from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools', 'benchmark'))
from detection_voc_synthetic import VOC_CONFIGS, distill_model, tiny_detector, voc_runner_cfg  # noqa: E402,E501
from make_synthetic_voc_det import make_synthetic_voc_det  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')


# --------------------------------------------------------------------------- the authors' code
class AuthorsFeatureLoss(nn.Module):
    """yzd-v/FGD `mmdet/distillation/losses/fgd.py` (`FeatureLoss`, commit c03a6cf), its
    operations as they are (mmcv's `kaiming_init` / `constant_init` are MMEngine's now)."""

    def __init__(self, student_channels, teacher_channels, temp=0.5, alpha_fgd=0.001,
                 beta_fgd=0.0005, gamma_fgd=0.001, lambda_fgd=0.000005):
        super().__init__()
        self.temp = temp
        self.alpha_fgd = alpha_fgd
        self.beta_fgd = beta_fgd
        self.gamma_fgd = gamma_fgd
        self.lambda_fgd = lambda_fgd
        if student_channels != teacher_channels:
            self.align = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, stride=1,
                                   padding=0)
        else:
            self.align = None
        self.conv_mask_s = nn.Conv2d(teacher_channels, 1, kernel_size=1)
        self.conv_mask_t = nn.Conv2d(teacher_channels, 1, kernel_size=1)
        self.channel_add_conv_s = nn.Sequential(
            nn.Conv2d(teacher_channels, teacher_channels // 2, kernel_size=1),
            nn.LayerNorm([teacher_channels // 2, 1, 1]), nn.ReLU(inplace=True),
            nn.Conv2d(teacher_channels // 2, teacher_channels, kernel_size=1))
        self.channel_add_conv_t = nn.Sequential(
            nn.Conv2d(teacher_channels, teacher_channels // 2, kernel_size=1),
            nn.LayerNorm([teacher_channels // 2, 1, 1]), nn.ReLU(inplace=True),
            nn.Conv2d(teacher_channels // 2, teacher_channels, kernel_size=1))
        kaiming_init(self.conv_mask_s, mode='fan_in')
        kaiming_init(self.conv_mask_t, mode='fan_in')
        constant_init(self.channel_add_conv_s[-1], val=0)
        constant_init(self.channel_add_conv_t[-1], val=0)

    def forward(self, preds_S, preds_T, gt_bboxes, img_metas):
        assert preds_S.shape[-2:] == preds_T.shape[-2:]
        if self.align is not None:
            preds_S = self.align(preds_S)
        N, C, H, W = preds_S.shape
        S_attention_t, C_attention_t = self.get_attention(preds_T, self.temp)
        S_attention_s, C_attention_s = self.get_attention(preds_S, self.temp)
        Mask_fg = torch.zeros_like(S_attention_t)
        Mask_bg = torch.ones_like(S_attention_t)
        wmin, wmax, hmin, hmax = [], [], [], []
        for i in range(N):
            new_boxxes = torch.ones_like(gt_bboxes[i])
            new_boxxes[:, 0] = gt_bboxes[i][:, 0] / img_metas[i]['img_shape'][1] * W
            new_boxxes[:, 2] = gt_bboxes[i][:, 2] / img_metas[i]['img_shape'][1] * W
            new_boxxes[:, 1] = gt_bboxes[i][:, 1] / img_metas[i]['img_shape'][0] * H
            new_boxxes[:, 3] = gt_bboxes[i][:, 3] / img_metas[i]['img_shape'][0] * H
            wmin.append(torch.floor(new_boxxes[:, 0]).int())
            wmax.append(torch.ceil(new_boxxes[:, 2]).int())
            hmin.append(torch.floor(new_boxxes[:, 1]).int())
            hmax.append(torch.ceil(new_boxxes[:, 3]).int())
            area = 1.0 / (hmax[i].view(1, -1) + 1 - hmin[i].view(1, -1)) / (
                wmax[i].view(1, -1) + 1 - wmin[i].view(1, -1))
            for j in range(len(gt_bboxes[i])):
                Mask_fg[i][hmin[i][j]:hmax[i][j] + 1, wmin[i][j]:wmax[i][j] + 1] = \
                    torch.maximum(Mask_fg[i][hmin[i][j]:hmax[i][j] + 1,
                                             wmin[i][j]:wmax[i][j] + 1], area[0][j])
            Mask_bg[i] = torch.where(Mask_fg[i] > 0, 0, 1)
            if torch.sum(Mask_bg[i]):
                Mask_bg[i] /= torch.sum(Mask_bg[i])
        fg_loss, bg_loss = self.get_fea_loss(preds_S, preds_T, Mask_fg, Mask_bg, C_attention_s,
                                             C_attention_t, S_attention_s, S_attention_t)
        mask_loss = self.get_mask_loss(C_attention_s, C_attention_t, S_attention_s,
                                       S_attention_t)
        rela_loss = self.get_rela_loss(preds_S, preds_T)
        return self.alpha_fgd * fg_loss + self.beta_fgd * bg_loss \
            + self.gamma_fgd * mask_loss + self.lambda_fgd * rela_loss

    def get_attention(self, preds, temp):
        N, C, H, W = preds.shape
        value = torch.abs(preds)
        fea_map = value.mean(axis=1, keepdim=True)
        S_attention = (H * W * F.softmax((fea_map / temp).view(N, -1), dim=1)).view(N, H, W)
        channel_map = value.mean(axis=2, keepdim=False).mean(axis=2, keepdim=False)
        C_attention = C * F.softmax(channel_map / temp, dim=1)
        return S_attention, C_attention

    def get_fea_loss(self, preds_S, preds_T, Mask_fg, Mask_bg, C_s, C_t, S_s, S_t):
        loss_mse = nn.MSELoss(reduction='sum')
        Mask_fg = Mask_fg.unsqueeze(dim=1)
        Mask_bg = Mask_bg.unsqueeze(dim=1)
        C_t = C_t.unsqueeze(dim=-1)
        C_t = C_t.unsqueeze(dim=-1)
        S_t = S_t.unsqueeze(dim=1)
        fea_t = torch.mul(preds_T, torch.sqrt(S_t))
        fea_t = torch.mul(fea_t, torch.sqrt(C_t))
        fg_fea_t = torch.mul(fea_t, torch.sqrt(Mask_fg))
        bg_fea_t = torch.mul(fea_t, torch.sqrt(Mask_bg))
        fea_s = torch.mul(preds_S, torch.sqrt(S_t))
        fea_s = torch.mul(fea_s, torch.sqrt(C_t))
        fg_fea_s = torch.mul(fea_s, torch.sqrt(Mask_fg))
        bg_fea_s = torch.mul(fea_s, torch.sqrt(Mask_bg))
        fg_loss = loss_mse(fg_fea_s, fg_fea_t) / len(Mask_fg)
        bg_loss = loss_mse(bg_fea_s, bg_fea_t) / len(Mask_bg)
        return fg_loss, bg_loss

    def get_mask_loss(self, C_s, C_t, S_s, S_t):
        return torch.sum(torch.abs((C_s - C_t))) / len(C_s) + \
            torch.sum(torch.abs((S_s - S_t))) / len(S_s)

    def spatial_pool(self, x, in_type):
        batch, channel, width, height = x.size()
        input_x = x
        input_x = input_x.view(batch, channel, height * width)
        input_x = input_x.unsqueeze(1)
        if in_type == 0:
            context_mask = self.conv_mask_s(x)
        else:
            context_mask = self.conv_mask_t(x)
        context_mask = context_mask.view(batch, 1, height * width)
        context_mask = F.softmax(context_mask, dim=2)
        context_mask = context_mask.unsqueeze(-1)
        context = torch.matmul(input_x, context_mask)
        context = context.view(batch, channel, 1, 1)
        return context

    def get_rela_loss(self, preds_S, preds_T):
        loss_mse = nn.MSELoss(reduction='sum')
        context_s = self.spatial_pool(preds_S, 0)
        context_t = self.spatial_pool(preds_T, 1)
        out_s = preds_S
        out_t = preds_T
        channel_add_s = self.channel_add_conv_s(context_s)
        out_s = out_s + channel_add_s
        channel_add_t = self.channel_add_conv_t(context_t)
        out_t = out_t + channel_add_t
        return loss_mse(out_s, out_t) / len(out_s)


#: Their parameter names -> ours, for one level (`levels.<k>.` in front).
NAMES = {'align': 'align', 'conv_mask_s': 'student_context.conv_mask',
         'conv_mask_t': 'teacher_context.conv_mask',
         'channel_add_conv_s': 'student_context.channel_add',
         'channel_add_conv_t': 'teacher_context.channel_add'}


def their_state_as_ours(theirs: AuthorsFeatureLoss, level: int = 0) -> dict:
    out = {}
    for key, value in theirs.state_dict().items():
        head, _, rest = key.partition('.')
        out[f'levels.{level}.{NAMES[head]}.{rest}'] = value
    return out


def randomize(module: nn.Module, seed: int) -> None:
    """Every parameter drawn again (the zero-initialised last convs included), so that
    every term and every block matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.dim() == 3 else 0.0))


# --------------------------------------------------------------------------- data samples
def det_samples(boxes, shapes, key='img_shape'):
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    samples = []
    for i, (b, shape) in enumerate(zip(boxes, shapes)):
        sample = DetDataSample(metainfo={key: shape})
        # One sample carries mmdet's box type, the others plain tensors.
        sample.gt_instances = InstanceData(bboxes=HorizontalBoxes(b) if i == 0 else b,
                                           labels=torch.zeros(len(b), dtype=torch.long))
        samples.append(sample)
    return samples


def boxes_for(batch: int):
    """Boxes of several sizes, overlapping ones, one reaching the image's border, a box
    over the whole image, and an image without boxes (pixels of a 96 x 80 / 64 x 80 image)."""
    found = [
        torch.tensor([[3.5, 4.0, 30.2, 41.7], [20.0, 18.5, 55.0, 70.0], [22.0, 25.0, 26.0, 29.5],
                      [60.3, 2.0, 80.0, 96.0]]),
        torch.zeros(0, 4),
        torch.tensor([[0.0, 0.0, 80.0, 64.0]]),
        torch.tensor([[10.0, 10.0, 12.0, 11.0], [5.0, 30.0, 50.0, 60.0], [8.0, 33.0, 40.0, 50.0]]),
    ]
    shapes = [(96, 80), (96, 80), (64, 80), (64, 72)]
    return found[:batch], shapes[:batch]


# --------------------------------------------------------------------------- (a) values
@pytest.mark.parametrize('n,cs,ct,h,w', [(2, 8, 8, 12, 10), (3, 6, 8, 7, 9), (4, 16, 16, 5, 5)])
@pytest.mark.parametrize('random_blocks', [False, True])
def test_fgd_equals_the_authors_feature_loss(n, cs, ct, h, w, random_blocks):
    torch.manual_seed(0)
    theirs = AuthorsFeatureLoss(cs, ct, temp=0.5, alpha_fgd=0.001, beta_fgd=0.0005,
                                gamma_fgd=0.0005, lambda_fgd=0.000005)
    if random_blocks:
        randomize(theirs, seed=n)
    ours = FGDLoss(cs, ct, temp=0.5, alpha_fgd=0.001, beta_fgd=0.0005, gamma_fgd=0.0005,
                   lambda_fgd=0.000005)
    ours.load_state_dict(their_state_as_ours(theirs))
    s, t = torch.randn(n, cs, h, w) * 2, torch.randn(n, ct, h, w) * 2
    boxes, shapes = boxes_for(n)
    expected = theirs(s, t, boxes, [dict(img_shape=shape) for shape in shapes])
    got = ours(s, t, det_samples(boxes, shapes))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=0)
    # The padded batch's size instead of the image's: their computation with that size.
    batch = (max(shape[0] for shape in shapes) + 8, max(shape[1] for shape in shapes) + 16)
    expected = theirs(s, t, boxes, [dict(img_shape=batch)] * n)
    got = FGDLoss(cs, ct, gamma_fgd=0.0005, box_scale='batch_input_shape').requires_grad_(False)
    got.load_state_dict(their_state_as_ours(theirs))
    torch.testing.assert_close(got(s, t, det_samples(boxes, [batch] * n, 'batch_input_shape')),
                               expected, rtol=1e-5, atol=0)


def test_defaults_are_the_authors_and_without_boxes_all_is_background():
    loss = FGDLoss(8, 8)
    assert (loss.temp, loss.alpha_fgd, loss.beta_fgd, loss.gamma_fgd, loss.lambda_fgd) == (
        0.5, 0.001, 0.0005, 0.001, 0.000005)
    assert isinstance(loss.levels[0].align, nn.Identity)
    assert isinstance(FGDLoss(4, 8).levels[0].align, nn.Conv2d)
    torch.manual_seed(0)
    theirs = AuthorsFeatureLoss(8, 8)
    loss.load_state_dict(their_state_as_ours(theirs))
    s, t = torch.randn(2, 8, 6, 7), torch.randn(2, 8, 6, 7)
    empty = [torch.zeros(0, 4)] * 2
    expected = theirs(s, t, empty, [dict(img_shape=(48, 56))] * 2)
    torch.testing.assert_close(loss(s, t), expected, rtol=1e-5, atol=0)  # no data samples
    torch.testing.assert_close(loss(s, t, det_samples(empty, [(48, 56)] * 2)), expected,
                               rtol=1e-5, atol=0)


def test_masks_scale_boxes_to_the_level_and_keep_the_largest_weight():
    # A 40 x 40 image on a 4 x 4 level: a box (0, 0, 15, 15) -> cells 0..2 (floor 0, ceil
    # 1.5 = 2, inclusive), 1 / 9 each; a small box inside it (11, 11, 19, 19) -> cells 1..2,
    # 1 / 4: the overlap keeps the larger weight.
    boxes = torch.tensor([[0.0, 0.0, 15.0, 15.0], [11.0, 11.0, 19.0, 19.0]])
    fg, bg = box_masks([(boxes, (40, 40))], (4, 4), torch.device('cpu'))
    expected = torch.zeros(4, 4)
    expected[:3, :3] = 1 / 9
    expected[1:3, 1:3] = 1 / 4
    torch.testing.assert_close(fg[0], expected)
    background = (expected == 0).float()
    torch.testing.assert_close(bg[0], background / background.sum())
    fg, bg = box_masks([(torch.tensor([[0.0, 0.0, 40.0, 40.0]]), (40, 40))], (4, 4),
                       torch.device('cpu'))
    assert torch.all(fg == 1 / 25) and torch.all(bg == 0)  # 5 x 5 counted: their area rule


def test_a_list_of_levels_is_the_sum_of_per_level_losses_with_their_own_blocks():
    torch.manual_seed(0)
    theirs = [AuthorsFeatureLoss(8, 8), AuthorsFeatureLoss(8, 8)]
    for k, level in enumerate(theirs):
        randomize(level, seed=10 + k)
    ours = FGDLoss(8, 8, num_levels=2)
    state = {**their_state_as_ours(theirs[0], 0), **their_state_as_ours(theirs[1], 1)}
    ours.load_state_dict(state)
    boxes, shapes = boxes_for(2)
    metas = [dict(img_shape=shape) for shape in shapes]
    s = [torch.randn(2, 8, 12, 10), torch.randn(2, 8, 6, 5)]
    t = [torch.randn(2, 8, 12, 10), torch.randn(2, 8, 6, 5)]
    expected = sum(level(a, b, boxes, metas) for level, a, b in zip(theirs, s, t))
    torch.testing.assert_close(ours(s, t, det_samples(boxes, shapes)), expected, rtol=1e-5,
                               atol=0)
    # Without channels the blocks are built on the first call, one per level, at its widths.
    lazy = FGDLoss()
    lazy.eval()(s, t)
    assert len(lazy.levels) == 2 and lazy.levels[1].teacher_channels == 8
    lazy.load_state_dict(state)
    torch.testing.assert_close(lazy(s, t, det_samples(boxes, shapes)), expected, rtol=1e-5,
                               atol=0)
    with pytest.raises(ValueError, match='blocks for 2 level'):
        ours(s[0], t[0])
    with pytest.raises(ValueError, match='built for 8 student and 8 teacher channels; got 4'):
        ours([x[:, :4] for x in s], t)
    with pytest.raises(ValueError, match='both student_channels and teacher_channels'):
        FGDLoss(student_channels=8)


# --------------------------------------------------------------------------- (b) gradients
def test_gradients_reach_the_student_and_every_block_never_the_teacher():
    torch.manual_seed(0)
    loss = FGDLoss(6, 8, gamma_fgd=0.0005)
    randomize(loss, seed=3)  # the zero-initialised last convs would stop the context's grads
    s = torch.randn(2, 6, 9, 8, requires_grad=True)
    t = torch.randn(2, 8, 9, 8, requires_grad=True)
    boxes, shapes = boxes_for(2)
    loss(s, t, det_samples(boxes, shapes)).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    for name, p in loss.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # Freshly initialised (their init), the teacher's GcBlock learns through its last conv.
    fresh = FGDLoss(8, 8)
    fresh(torch.randn(2, 8, 5, 5, requires_grad=True), torch.randn(2, 8, 5, 5)).backward()
    assert fresh.levels[0].teacher_context.channel_add[-1].weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- (c) the config
CONFIG = osp.join(VOC_CONFIGS, 'fgd_retinanet_r50_r18_voc0712.py')


def test_the_config_is_the_recipe_with_the_authors_retinanet_constants():
    cfg = load_config(CONFIG)
    assert cfg.model.recipe == 'fgd' and cfg.optim_wrapper.clip_grad.max_norm == 35
    recipe = Config.fromfile(osp.join(REPO, 'configs', 'recipes', 'fgd.py'))
    loss = recipe.distill.losses.loss_fgd
    assert (loss.temp, loss.alpha_fgd, loss.beta_fgd, loss.gamma_fgd, loss.lambda_fgd) == (
        0.5, 0.001, 0.0005, 0.0005, 0.000005)


def test_config_builds_a_tiny_retinanet_distiller_whose_blocks_train(tmp_path, monkeypatch):
    # The student's FPN narrower than the teacher's: each level's loss gets a 1x1 alignment.
    model = distill_model(CONFIG, tiny_detector('retinanet', fpn_channels=16),
                          tiny_detector('retinanet', base_channels=16), None)
    distiller = build_model_from_cfg(model)  # builds, dry-runs, then init_weights()
    levels = ['p3', 'p4', 'p5', 'p6', 'p7']
    assert list(distiller.distill_losses) == [f'loss_fgd_{lv}' for lv in levels]
    for loss in distiller.distill_losses.values():
        (level, ) = loss.levels  # built on the dry run, before any optimizer
        assert (level.align.in_channels, level.align.out_channels) == (16, 32)
        assert loss.gamma_fgd == 0.0005
        # Their initialisation survives the distiller's init_weights().
        assert torch.all(level.student_context.channel_add[-1].weight == 0)
        assert torch.all(level.teacher_context.conv_mask.bias == 0)

    root = make_synthetic_voc_det(str(tmp_path / 'voc'), num_trainval=4, num_test=1, size=96)
    cfg = voc_runner_cfg('retinanet', root, str(tmp_path / 'work'), model, batch_size=2,
                         image_size=96)
    with DefaultScope.overwrite_default_scope('mmdet'):
        data = next(iter(Runner.build_dataloader(Config(cfg).train_dataloader)))
    optim_wrapper = build_optim_wrapper(distiller, load_config(CONFIG).optim_wrapper)
    in_optimizer = {id(p) for group in optim_wrapper.optimizer.param_groups
                    for p in group['params']}
    blocks = dict(distiller.distill_losses.named_parameters())
    assert blocks and all(id(p) in in_optimizer for p in blocks.values())
    before = {k: v.detach().clone() for k, v in blocks.items()}

    foreground = []

    def spy(images, size, device):
        masks = box_masks(images, size, device)
        foreground.append(float(masks[0].sum()))
        return masks

    monkeypatch.setattr(fgd, 'box_masks', spy)
    distiller.train()
    logged = distiller.train_step(copy.deepcopy(data), optim_wrapper)
    assert len(foreground) == 5 and all(f > 0 for f in foreground)  # the batch's VOC boxes
    assert all(logged[f'loss_fgd_{lv}'] > 0 for lv in levels)
    changed = [k for k, v in blocks.items() if not torch.equal(v, before[k])]
    assert any('align' in k for k in changed) and any('channel_add.3' in k for k in changed)
    # The blocks belong to the distiller, not to the student that is exported.
    assert not any('context' in k or 'align' in k for k in distiller.student_state_dict())
    assert all(k.startswith('distill_losses.') for k in distiller.state_dict()
               if 'context' in k)
