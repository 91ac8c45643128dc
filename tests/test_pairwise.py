"""Structured KD's pair-wise term (Liu et al., CVPR 2019): the loss against the authors'
computation, where gradients stop, and the configs and recipe on real mmseg segmentors."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import nn

from mmkd.losses import (
    PairWiseSimilarityLoss,
    ShapeMismatchError,
    node_pool_kernel,
    position_similarity,
)
from mmkd.registry import MODELS

from conftest import REPO

pytestmark = pytest.mark.usefixtures('one_thread')

SYNTHETIC = osp.join(REPO, 'configs', 'segmentation', 'synthetic_voc')


# --------------------------------------------------------------------------- the authors' code
# irfanICMLL/structure_knowledge_distillation (ce208e1), written out with their operations:
# utils/utils.py L2, similarity, sim_dis_compute (lines 170-183) and utils/criterion.py
# CriterionPairWiseforWholeFeatAfterPool.forward (lines 236-245), the feature passed directly.
def authors_l2(f_):
    return (((f_**2).sum(dim=1))**0.5).reshape(f_.shape[0], 1, f_.shape[2], f_.shape[3]) + 1e-8


def authors_similarity(feat):
    feat = feat.float()
    tmp = authors_l2(feat).detach()
    feat = feat / tmp
    feat = feat.reshape(feat.shape[0], feat.shape[1], -1)
    return torch.einsum('icm,icn->imn', [feat, feat])


def authors_sim_dis_compute(f_S, f_T):
    sim_err = ((authors_similarity(f_T) - authors_similarity(f_S))**2) / (
        (f_T.shape[-1] * f_T.shape[-2])**2) / f_T.shape[0]
    return sim_err.sum()


def authors_pair_wise(feat_S, feat_T, scale):
    feat_T.detach()  # (sic: the result is discarded; their teacher runs under no_grad)
    total_w, total_h = feat_T.shape[2], feat_T.shape[3]
    patch_w, patch_h = int(total_w * scale), int(total_h * scale)
    maxpool = nn.MaxPool2d(kernel_size=(patch_w, patch_h), stride=(patch_w, patch_h),
                           padding=0, ceil_mode=True)
    return authors_sim_dis_compute(maxpool(feat_S), maxpool(feat_T))


SHAPES = [  # (N, C_student, C_teacher, H, W)
    (2, 8, 16, 8, 8),     # even: 2 x 2 nodes
    (3, 5, 12, 9, 7),     # odd: 4 x 3 windows, ceil_mode adds smaller border nodes: 3 x 3
    (1, 4, 6, 65, 65),    # a 512 crop's 1/8 map with an extra pixel: 3 x 3 nodes
    (2, 32, 128, 16, 16),
    (4, 3, 3, 13, 6),
]


@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('scale', [0.5, 0.25, 1.0])
def test_the_loss_is_the_authors_value_and_gradient(shape, scale):
    n, c_s, c_t, h, w = shape
    gen = torch.Generator().manual_seed(h * w + c_s)
    s = torch.randn(n, c_s, h, w, generator=gen)
    t = torch.randn(n, c_t, h, w, generator=gen).relu() + 0.1
    ours_in, theirs_in = s.clone().requires_grad_(), s.clone().requires_grad_()
    ours = PairWiseSimilarityLoss(scale=scale, loss_weight=0.5)(ours_in, t)
    theirs = 0.5 * authors_pair_wise(theirs_in, t, scale)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=0)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, rtol=1e-5, atol=1e-9)


def test_the_norm_is_a_constant_for_autograd_as_in_the_authors_code():
    # F.normalize (the norm differentiated) gives the same value and another gradient.
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(2, 6, 8, 8, generator=gen, requires_grad=True)
    t = torch.randn(2, 10, 8, 8, generator=gen)
    PairWiseSimilarityLoss()(s, t).backward()

    def differentiated_norm(x):
        x = F.normalize(F.max_pool2d(x, 4, 4, ceil_mode=True), dim=1).flatten(2)
        return x.transpose(1, 2) @ x

    other = s.detach().clone().requires_grad_()
    value = (differentiated_norm(other) - differentiated_norm(t)).pow(2).sum() / 16 / 2
    value.backward()
    torch.testing.assert_close(value, PairWiseSimilarityLoss()(s, t), rtol=1e-5, atol=0)
    assert not torch.allclose(other.grad, s.grad, rtol=1e-2)


def test_gradient_reaches_the_student_and_never_the_teacher():
    s = torch.randn(2, 8, 9, 9, requires_grad=True)
    t = torch.randn(2, 16, 9, 9, requires_grad=True)
    value = PairWiseSimilarityLoss()(s, t)
    value.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    # The same map on both sides gives zero; fp16 inputs are compared in fp32.
    assert PairWiseSimilarityLoss()(t, t).item() == 0
    assert PairWiseSimilarityLoss()(s.half(), t.half()).dtype == torch.float32


def test_nodes_similarities_and_shape_errors():
    assert node_pool_kernel(64, 64, 0.5) == (32, 32)
    assert node_pool_kernel(65, 9, 0.5) == (32, 4)  # truncated, as int() in the authors' code
    assert node_pool_kernel(1, 3, 0.5) == (1, 1)    # theirs: an empty window (an error)
    assert PairWiseSimilarityLoss()(torch.randn(2, 3, 1, 3), torch.randn(2, 5, 1, 3)) >= 0
    sim = position_similarity(torch.randn(3, 7, 4, 5))
    assert sim.shape == (3, 20, 20)
    torch.testing.assert_close(sim.diagonal(dim1=1, dim2=2), torch.ones(3, 20))
    torch.testing.assert_close(sim, sim.transpose(1, 2))
    with pytest.raises(ShapeMismatchError, match='same N, H and W'):
        PairWiseSimilarityLoss()(torch.randn(2, 4, 8, 8), torch.randn(2, 4, 16, 16))
    with pytest.raises(ShapeMismatchError, match='same N, H and W'):
        PairWiseSimilarityLoss()(torch.randn(2, 4, 8, 8), torch.randn(3, 4, 8, 8))
    with pytest.raises(ValueError, match=r'scale must be in \(0, 1\]'):
        PairWiseSimilarityLoss(scale=0)


# --------------------------------------------------------------------------- configs
def _samples(n: int, size: int = 64) -> list:
    out = []
    for _ in range(n):
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), pad_shape=(size, size),
                                             ori_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 21, (1, size, size)))
        out.append(sample)
    return out


def test_the_synthetic_config_trains_one_step_on_the_feature_before_the_classifier():
    cfg = Config.fromfile(osp.join(
        SYNTHETIC, 'sskd_deeplabv3plus_r18w16-r18w8-d8_synthetic-voc-64x64.py'))
    cfg.model.teacher.checkpoint = None  # an untrained teacher: the wiring is what is tested
    model = MODELS.build(cfg.model).train()
    assert sorted(model.distill_losses) == ['loss_pa', 'loss_pkd']
    pa = model.distill_losses['loss_pa']
    assert isinstance(pa, PairWiseSimilarityLoss) and (pa.scale, pa.loss_weight) == (0.5, 0.5)

    # What the loss must see: the input of each net's classifier (after the head's dropout).
    seen = {}
    student_head, teacher_head = model.student.decode_head, model.teacher.decode_head
    hooks = [student_head.conv_seg.register_forward_pre_hook(
                 lambda _m, args: seen.__setitem__('s', args[0].detach().clone())),
             student_head.dropout.register_forward_hook(
                 lambda _m, _a, out: seen.__setitem__('s_dropout', out.detach().clone())),
             teacher_head.conv_seg.register_forward_pre_hook(
                 lambda _m, args: seen.__setitem__('t', args[0].detach().clone()))]
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.student.parameters(), lr=0.1)
    teacher_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    student_before = student_head.sep_bottleneck[0].pointwise_conv.conv.weight.detach().clone()
    losses = model(torch.randn(2, 3, 64, 64), _samples(2), mode='loss')
    for hook in hooks:
        hook.remove()

    assert torch.equal(seen['s'], seen['s_dropout'])  # the authors' PSP output is after dropout
    assert seen['s'].shape == (2, 16, 16, 16) and seen['t'].shape == (2, 32, 16, 16)
    reference = 0.5 * authors_pair_wise(seen['s'], seen['t'].contiguous(), 0.5)
    torch.testing.assert_close(losses['loss_pa'].detach(), reference, rtol=1e-5, atol=0)
    assert losses['loss_pa'].requires_grad

    optimizer.zero_grad()
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert student_head.sep_bottleneck[0].pointwise_conv.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())
    optimizer.step()
    assert not torch.equal(student_head.sep_bottleneck[0].pointwise_conv.conv.weight,
                           student_before)
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key


def test_the_voc_config_and_the_recipe_record_the_classifiers_input():
    voc = Config.fromfile(osp.join(REPO, 'configs', 'segmentation', 'voc',
                                   'sskd_deeplabv3plus_r101-r18-d8_4xb4-40k_voc12aug-512x512.py'))
    assert voc.model.recorders.feat == dict(type='ModuleInputs', source='decode_head.conv_seg')
    assert voc.model.losses.loss_pa == dict(type='PairWiseSimilarityLoss', student='feat',
                                            teacher='feat', scale=0.5, loss_weight=0.5)
    assert voc.model.losses.loss_pkd.loss_weight == 10.0  # the pixel-wise term, lambda_1
    assert voc.model.teacher_norm == 'eval'

    synthetic = Config.fromfile(osp.join(
        SYNTHETIC, 'sskd_deeplabv3plus_r18w16-r18w8-d8_synthetic-voc-64x64.py'))
    model = MODELS.build(dict(
        type='Distiller', recipe='structured_kd', student=synthetic.model.student,
        teacher=dict(synthetic.model.teacher, checkpoint=None)))
    for records in (model.student_records, model.records['teacher']):
        assert records['feat'].source == 'decode_head.conv_seg'
        assert type(records['feat']).__name__ == 'ModuleInputs'
        assert records['logits'].source == 'decode_head.conv_seg'
    assert sorted(model.distill_losses) == ['loss_pa', 'loss_pixel_kd']
    assert model.distill_losses['loss_pa'].loss_weight == 0.5
