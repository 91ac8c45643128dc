"""Recipes: records found by role in each net, merged with the config's own keys, one
loss per FPN level; PKD against its formula; every recipe builds on tiny real models."""
import copy
import glob
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmkd.distillers import DistillerConfigError, build_model_from_cfg, load_config
from mmkd.distillers.recipe import (
    expand_per_level,
    list_recipes,
    load_recipe,
    merge_recipe,
    recipe_hooks,
)
from mmkd.losses import PKDLoss
from mmkd.recorders.locate import LocateError, locate_records, locator_for
from mmkd.registry import MODELS

from conftest import REPO, STUDENT_WIDTHS, TEACHER_WIDTHS, tiny_classifier

sys.path.insert(0, osp.join(REPO, 'tools', 'benchmark'))
from detection_voc_synthetic import tiny_detector  # noqa: E402

RECIPES = ['cwd', 'dkd', 'fgd', 'fpn_mse', 'head_kd', 'kd', 'mgd', 'ofd', 'pixel_kd', 'pkd',
           'reviewkd', 'structured_kd']


pytestmark = pytest.mark.usefixtures('one_thread')


def test_the_recipes_mmkd_ships_load_and_name_their_task():
    assert list_recipes() == RECIPES
    tasks = {name: load_recipe(name).task for name in RECIPES}
    assert tasks == dict(cwd='segmentation', dkd='classification', fgd='detection',
                         fpn_mse='detection',
                         head_kd='detection', kd='classification', mgd='detection',
                         ofd='classification',
                         pixel_kd='segmentation', pkd='detection', reviewkd='classification',
                         structured_kd='segmentation')
    for name in RECIPES:  # plain config files: no model, only the distillation part
        assert 'model' not in Config.fromfile(osp.join(REPO, 'configs', 'recipes', f'{name}.py'))
        assert load_recipe(name).description
    with pytest.raises(DistillerConfigError, match='recipes mmkd ships: cwd, dkd'):
        load_recipe('no_such_recipe')


# --------------------------------------------------------------------------- locators
def segmentor(width: int = 8) -> dict:
    cfg, scope = __import__('mmkd.distillers.builder', fromlist=['x']).model_cfg_from(
        dict(cfg_path='mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512.py',
             pretrained=None, data_preprocessor=dict(size=(64, 64)),
             backbone=dict(depth=18, stem_channels=width, base_channels=width,
                           norm_cfg=dict(type='BN')),
             decode_head=dict(in_channels=8 * width, channels=2 * width, c1_in_channels=width,
                              c1_channels=4, dilations=(1, 2, 3, 4), norm_cfg=dict(type='BN')),
             auxiliary_head=dict(in_channels=4 * width, channels=width,
                                 norm_cfg=dict(type='BN'))), 'seg')
    return dict(cfg, _scope_=scope)


def test_locators_find_the_records_of_each_family():
    classifier = build_model_from_cfg(tiny_classifier())
    assert locator_for(classifier).locate('logits') == {'source': 'head.fc'}
    assert locator_for(classifier).locate('pooled') == {'source': 'neck', 'item': -1}
    assert locator_for(classifier).task == 'classification'

    retina = build_model_from_cfg(tiny_detector('retinanet'), 'mmdet')
    levels = locator_for(retina).locate('fpn')
    assert [loc['level'] for loc in levels] == ['p3', 'p4', 'p5', 'p6', 'p7']  # strides 8..128
    assert [loc['item'] for loc in levels] == [0, 1, 2, 3, 4]
    heads = locator_for(retina).locate('cls_score')
    assert {loc['source'] for loc in heads} == {'bbox_head.retina_cls'}
    assert [loc['call_index'] for loc in heads] == [0, 1, 2, 3, 4]
    assert locator_for(retina).value('num_classes') == 20

    frcnn = build_model_from_cfg(tiny_detector('faster-rcnn'), 'mmdet')
    assert [loc['level'] for loc in locator_for(frcnn).locate('fpn')] == [
        'p2', 'p3', 'p4', 'p5', 'p6']  # the RPN's strides 4..64
    with pytest.raises(LocateError, match=r'no role <cls_score>.*<fpn>'):
        locator_for(frcnn).locate('cls_score')

    seg = build_model_from_cfg(segmentor())
    assert locator_for(seg).locate('decode_logits') == {'source': 'decode_head.conv_seg'}
    assert locator_for(seg).task == 'segmentation'


def test_an_undecidable_role_lists_the_candidates_and_the_key_to_set():
    # Two linear layers with one output per class: which are the logits?
    model = build_model_from_cfg(dict(tiny_classifier(), head=dict(
        type='StackedLinearClsHead', num_classes=10, in_channels=8, mid_channels=[10])))
    with pytest.raises(LocateError, match=r"student record 'logits'.*ambiguous.*"
                       r"\['head.layers.0.fc', 'head.layers.1.fc'\].*"
                       r'model.recorders.<record>.source'):
        locate_records(model, dict(logits=dict(type='ModuleOutputs', source='<logits>')),
                       'student')
    with pytest.raises(LocateError, match='mmkd cannot locate records by role in a Linear'):
        locator_for(torch.nn.Linear(2, 2))


def test_per_level_records_give_one_connector_and_one_loss_per_level():
    levels = {'fpn': ['p3', 'p4']}
    connectors = dict(fpn_s=dict(type='ConvBNConnector', input='student.fpn', like='teacher.fpn'),
                      other=dict(type='IdentityConnector', input='student.logits'))
    losses = dict(loss_fpn=dict(type='MSELoss', student='fpn_s', teacher='teacher.fpn',
                                loss_weight=2.0),
                  loss_kd=dict(type='KDLoss', student='logits', teacher='logits'))
    connectors, losses = expand_per_level(connectors, losses, levels)
    assert connectors == dict(
        fpn_s_p3=dict(type='ConvBNConnector', input='student.fpn_p3', like='teacher.fpn_p3'),
        fpn_s_p4=dict(type='ConvBNConnector', input='student.fpn_p4', like='teacher.fpn_p4'),
        other=dict(type='IdentityConnector', input='student.logits'))
    assert losses == dict(
        loss_fpn_p3=dict(type='MSELoss', student='fpn_s_p3', teacher='teacher.fpn_p3',
                         loss_weight=2.0),
        loss_fpn_p4=dict(type='MSELoss', student='fpn_s_p4', teacher='teacher.fpn_p4',
                         loss_weight=2.0),
        loss_kd=dict(type='KDLoss', student='logits', teacher='logits'))


def test_the_configs_keys_win_over_the_recipes():
    recipe = load_recipe('kd')
    merged = merge_recipe(recipe, dict(losses=dict(loss_kd=dict(tau=2.0)), recorders=None))
    assert merged['losses'] == dict(loss_kd=dict(type='KDLoss', student='logits',
                                                 teacher='logits', tau=2.0, loss_weight=0.9))
    assert merged['recorders'] == recipe.block['recorders']
    replaced = merge_recipe(recipe, dict(losses=dict(
        _delete_=True, loss_dkd=dict(type='DKDLoss', student='logits', teacher='logits'))))
    assert list(replaced['losses']) == ['loss_dkd']


def test_recipe_hooks_follow_the_runs_schedule():
    dkd = load_recipe('dkd')
    by_epoch = recipe_hooks(dkd, Config(dict(train_cfg=dict(by_epoch=True, max_epochs=12))))
    assert by_epoch == [dict(type='mmkd.DistillLossScheduleHook', warmup=1.0, by_epoch=True,
                             losses=['loss_dkd'])]  # 20 of 240 epochs
    by_iter = recipe_hooks(dkd, Config(dict(train_cfg=dict(type='IterBasedTrainLoop',
                                                           max_iters=2400))))
    assert by_iter[0]['warmup'] == pytest.approx(200) and by_iter[0]['by_epoch'] is False


def test_a_recipe_of_another_task_is_refused_by_name():
    with pytest.raises(DistillerConfigError, match=r"recipe 'fpn_mse' is for detection; the "
                       r'student \(ImageClassifier\) is a classification model.*\'kd\''):
        MODELS.build(dict(type='Distiller', student=tiny_classifier(), recipe='fpn_mse',
                          teacher=dict(tiny_classifier(), checkpoint=None)))


# --------------------------------------------------------------------------- every recipe
def _classifiers() -> dict:
    return dict(student=tiny_classifier(8, STUDENT_WIDTHS),
                teacher=dict(tiny_classifier(14, TEACHER_WIDTHS), checkpoint=None),
                dry_run_shape=(1, 28, 28))


@pytest.mark.parametrize('recipe', ['kd', 'dkd', 'ofd', 'reviewkd'])
def test_classification_recipes_build_and_step(recipe):
    model = MODELS.build(dict(type='Distiller', recipe=recipe, **_classifiers())).train()
    x = torch.randn(4, 1, 28, 28)
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    losses = model(x, samples, mode='loss')
    names = [n for n in losses if n.startswith('loss_') and n != 'loss_task']
    assert names == list(model.distill_losses) and all(losses[n] >= 0 for n in names)
    if recipe in ('ofd', 'reviewkd'):  # the authors' teacher mode
        assert model.frozen_teachers['teacher'].norm == 'batch_stats'


@pytest.mark.parametrize('recipe,family', [('fpn_mse', 'retinanet'), ('pkd', 'faster-rcnn'),
                                           ('head_kd', 'retinanet'), ('mgd', 'retinanet')])
def test_detection_recipes_give_one_loss_per_level(recipe, family):
    model = MODELS.build(dict(
        type='DetectionDistiller', recipe=recipe,
        student=dict(tiny_detector(family), _scope_='mmdet'),
        teacher=dict(tiny_detector(family, base_channels=16), _scope_='mmdet',
                     checkpoint=None)))
    levels = ['p3', 'p4', 'p5', 'p6', 'p7'] if family == 'retinanet' else [
        'p2', 'p3', 'p4', 'p5', 'p6']
    prefix = dict(fpn_mse='loss_fpn', pkd='loss_pkd', head_kd='loss_cls_kd',
                  mgd='loss_mgd')[recipe]
    assert list(model.distill_losses) == [f'{prefix}_{level}' for level in levels]
    if recipe == 'mgd':  # one generation block per level, at the teacher's width
        assert list(model.connectors) == [f'fpn_gen_{level}' for level in levels]
        assert all(c.generation[0].in_channels == 32 for c in model.connectors.values())
    if recipe == 'head_kd':
        assert model.distill_losses['loss_cls_kd_p3'].num_classes == 20  # found in the head
        assert model.student_records['cls_p5'].call_index == 2


@pytest.mark.parametrize('recipe', ['cwd', 'pixel_kd'])
def test_segmentation_recipes_build(recipe):
    model = MODELS.build(dict(type='Distiller', recipe=recipe, student=segmentor(8),
                              teacher=dict(segmentor(16), checkpoint=None)))
    assert model.student_records['logits'].source == 'decode_head.conv_seg'
    assert len(model.distill_losses) == 1


# --------------------------------------------------------------------------- PKD
def _pkd_reference(s: np.ndarray, t: np.ndarray) -> float:
    """The paper's imitation loss written out: each channel standardised over
    (N, H, W) with the unbiased std + 1e-6, then the mean squared difference / 2."""
    def norm(f):
        flat = np.moveaxis(f, 1, 0).reshape(f.shape[1], -1)
        return (flat - flat.mean(1, keepdims=True)) / (flat.std(1, ddof=1, keepdims=True) + 1e-6)
    return float(((norm(s) - norm(t)) ** 2).mean() / 2)


def test_pkd_against_its_formula_and_the_pearson_correlation():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 4, 5, 6, generator=gen), torch.randn(3, 4, 5, 6, generator=gen) * 7 + 3
    value = PKDLoss(loss_weight=6.0)(s, t)
    assert value.item() == pytest.approx(6 * _pkd_reference(s.double().numpy(),
                                                              t.double().numpy()), rel=1e-5)
    # = (1 - r) per channel, times (n - 1) / n, averaged over channels.
    n = 3 * 5 * 6
    flat_s = s.double().transpose(0, 1).reshape(4, -1)
    flat_t = t.double().transpose(0, 1).reshape(4, -1)
    r = torch.stack([torch.corrcoef(torch.stack([a, b]))[0, 1] for a, b in zip(flat_s, flat_t)])
    assert PKDLoss()(s, t).item() == pytest.approx(((1 - r) * (n - 1) / n).mean().item(),
                                                   rel=1e-4)
    # Scale and shift of the teacher's features change nothing; levels add up.
    assert PKDLoss()(s, t * 100 - 5).item() == pytest.approx(PKDLoss()(s, t).item(), rel=1e-4)
    assert PKDLoss()([s, s], [t, t]).item() == pytest.approx(2 * PKDLoss()(s, t).item())
    # A student map of another size is resized to the teacher's (bilinear), with gradients.
    small = s[:, :, ::2, ::2].clone().requires_grad_()
    up = torch.nn.functional.interpolate(small, size=(5, 6), mode='bilinear',
                                         align_corners=False)
    assert PKDLoss()(small, t).item() == pytest.approx(PKDLoss()(up, t).item(), rel=1e-6)
    PKDLoss()(small, t).backward()
    assert small.grad.abs().sum() > 0


# --------------------------------------------------------------------------- method configs
KD_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'kd', 'kd_*_fashionmnist.py')))


@pytest.mark.parametrize('path', KD_CONFIGS, ids=osp.basename)
def test_kd_configs_are_student_teacher_and_the_kd_recipe(path):
    """The Fashion-MNIST KD configs distil the logits at head.fc with tau 4 and weight
    0.9, as they did when they spelled the distillation part out."""
    cfg = load_config(path)
    assert cfg.model.recipe == 'mmkd::recipes/kd.py'
    model = copy.deepcopy(cfg.model.to_dict())
    model['teacher']['checkpoint'] = None
    distiller = MODELS.build(model)
    for group in distiller.records.values():
        assert list(group) == ['logits'] and group['logits'].source == 'head.fc'
    (name, loss), = distiller.distill_losses.items()
    assert name == 'loss_kd' and type(loss).__name__ == 'KDLoss'
    assert (loss.tau, loss.loss_weight, loss.reduction) == (4, 0.9, 'batchmean')
    assert {a: str(r) for a, r in distiller.loss_inputs['loss_kd'].items()} == dict(
        student='student.logits', teacher='teacher.logits')


def test_the_readme_lists_every_recipe():
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    section = text[text.index('## Distil your own model'):]
    section = section[:section.index('\n## ', 3)]
    assert 'python tools/distill.py' in section
    for name in list_recipes():
        assert f'| `{name}`' in section, name
