"""The feature visualiser: Distiller.distillation_inputs, the reductions, and
tools/visualizations/vis_features.py on a classification, a detection and a
segmentation config (tiny nets, checkpoints written here)."""
import copy
import os.path as osp
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.structures import DataSample

from mmkd.analysis.feature_maps import (
    FeaturePair,
    feature_pairs,
    feature_panel,
    principal_components,
)
from mmkd.distillers import build_model_from_cfg, build_model_from_config
from mmkd.registry import MODELS

from conftest import REPO, STUDENT_WIDTHS, TEACHER_WIDTHS, tiny_classifier

sys.path.insert(0, osp.join(REPO, 'tools', 'visualizations'))
sys.path.insert(0, osp.join(REPO, 'tools', 'benchmark'))
import vis_features  # noqa: E402
from detection_voc_synthetic import (  # noqa: E402
    VOC_CONFIGS,
    distill_model,
    tiny_detector,
    voc_runner_cfg,
)

FASHION = osp.join(REPO, 'configs', '_base_', 'datasets', 'fashion_mnist.py')
SEG_CWD = osp.join(REPO, 'configs', 'segmentation', 'synthetic_voc',
                   'cwd_deeplabv3plus_r18w16-r18w8-d8_synthetic-voc-64x64.py')


pytestmark = pytest.mark.usefixtures('one_thread')


def save_state(module: torch.nn.Module, path) -> str:
    torch.save(dict(state_dict=module.state_dict(), meta=dict()), str(path))
    return str(path)


def classification_model(teacher_ckpt: str) -> dict:
    """KD on the logits and an MSE hint on layer2 through a 1x1 conv + BN connector."""
    return dict(
        type='SingleTeacherDistiller',
        student=tiny_classifier(depth=8, widths=STUDENT_WIDTHS),
        teacher=dict(tiny_classifier(depth=14, widths=TEACHER_WIDTHS), checkpoint=teacher_ckpt),
        recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc'),
                       feat=dict(type='ModuleOutputs', source='backbone.layer2')),
        connectors=dict(feat_s=dict(type='ConvBNConnector', input='student.feat',
                                    like='teacher.feat')),
        losses=dict(loss_kd=dict(type='KDLoss', student='logits', teacher='logits', tau=4),
                    loss_hint=dict(type='MSELoss', student='feat_s', teacher='feat')),
        dry_run_shape=(1, 28, 28))


@pytest.fixture(scope='module')
def classification(tmp_path_factory, fashion_mnist_root):
    """A config file, a distiller checkpoint, an image file and the teacher net."""
    folder = tmp_path_factory.mktemp('vis_cls')
    teacher = build_model_from_cfg(tiny_classifier(depth=14, widths=TEACHER_WIDTHS))
    teacher.init_weights()
    teacher_ckpt = save_state(teacher, folder / 'teacher.pth')
    base = Config.fromfile(FASHION)
    cfg = Config(dict(model=classification_model(teacher_ckpt),
                      data_preprocessor=base.data_preprocessor.to_dict(),
                      test_dataloader=dict(dataset=dict(pipeline=base.test_pipeline)),
                      default_scope='mmkd'))
    config = str(folder / 'kd_hint_tiny.py')
    cfg.dump(config)
    distiller = build_model_from_config(cfg)
    for p in distiller.parameters():  # a "trained" student: not its initial weights
        p.data.add_(0.01 * torch.randn_like(p))
    checkpoint = save_state(distiller, folder / 'epoch_1.pth')
    images = np.fromfile(osp.join(fashion_mnist_root, 't10k-images-idx3-ubyte'),
                         dtype=np.uint8)[16:].reshape(-1, 28, 28)
    image = str(folder / 'ankle_boot.png')
    cv2.imwrite(image, images[0])
    return dict(config=config, checkpoint=checkpoint, image=image, pixels=images[0],
                teacher=teacher, distiller=distiller)


# --------------------------------------------------------------------------- the distiller
def test_distillation_inputs_are_what_the_losses_receive(classification):
    distiller = classification['distiller'].eval()
    inputs = torch.randn(3, 1, 28, 28)
    samples = [DataSample().set_gt_label(k) for k in (1, 2, 3)]
    values = distiller.distillation_inputs(inputs, samples)
    assert set(values) == {'loss_kd', 'loss_hint'}
    assert set(values['loss_kd']) == {'student', 'teacher'}
    with torch.no_grad():  # the nets' own outputs, run here
        teacher_logits = distiller.teacher(inputs, mode='tensor')
        student_logits = distiller.student(inputs, mode='tensor')
    torch.testing.assert_close(values['loss_kd']['teacher'], teacher_logits)
    torch.testing.assert_close(values['loss_kd']['student'], student_logits)
    # The student's hint value is the connector's output, not the raw record.
    assert values['loss_hint']['student'].shape == values['loss_hint']['teacher'].shape
    assert values['loss_hint']['student'].shape[1] == 2 * TEACHER_WIDTHS[1]
    # Fed to the losses, the values give the training step's losses (same batch, eval mode).
    with torch.no_grad():
        step = distiller.loss(inputs, samples)
    for name, args in values.items():
        torch.testing.assert_close(distiller.distill_losses[name](**args), step[name])
    # The records are freed again.
    assert all(group[n].num_calls == 0 for group in distiller.records.values() for n in group)


# --------------------------------------------------------------------------- the reductions
def test_mean_panel_shares_one_scale_and_subtracts_the_channel_means():
    t, s = torch.randn(6, 5, 4), torch.randn(3, 5, 4)  # channel counts may differ
    panel = feature_panel(FeaturePair('loss_x', t, s), 'mean')
    np.testing.assert_allclose(panel.teacher, t.numpy().mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(panel.difference, s.numpy().mean(0) - t.numpy().mean(0),
                               rtol=1e-6, atol=1e-6)
    both = np.stack([t.numpy().mean(0), s.numpy().mean(0)])
    assert panel.limits == pytest.approx((both.min(), both.max()))
    # With different channel counts PCA falls back to the channel mean.
    assert feature_panel(FeaturePair('loss_x', t, s), 'pca').kind == 'map'


def test_student_map_is_resized_to_the_teachers():
    t, s = torch.randn(4, 8, 8), torch.ones(4, 4, 4)
    panel = feature_panel(FeaturePair('loss_x', t, s), 'mean')
    assert panel.student.shape == (8, 8) and np.allclose(panel.student, 1)


def test_principal_components_against_numpy():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(8, 6, 5, generator=g) * torch.linspace(0.1, 3, 8)[:, None, None]
    s = t + 0.1 * torch.randn(8, 6, 5, generator=g)
    pt, ps = principal_components(t, s, k=3)
    x = t.reshape(8, -1).T.double().numpy()
    mean = x.mean(0)
    _, _, vh = np.linalg.svd(x - mean, full_matrices=False)
    want = ((x - mean) @ vh[:3].T).T.reshape(3, 6, 5)
    for k in range(3):  # each component up to its sign
        sign = np.sign((pt[k].numpy() * want[k]).sum())
        np.testing.assert_allclose(pt[k].numpy(), sign * want[k], rtol=1e-4, atol=1e-4)
    want_s = ((s.reshape(8, -1).T.double().numpy() - mean) @ vh[:3].T).T.reshape(3, 6, 5)
    np.testing.assert_allclose(np.abs(ps.numpy()), np.abs(want_s), rtol=1e-4, atol=1e-4)
    panel = feature_panel(FeaturePair('loss_x', t, s), 'pca')
    assert panel.kind == 'pca' and panel.teacher.shape == (6, 5, 3)
    assert panel.teacher.min() >= 0 and panel.teacher.max() <= 1
    np.testing.assert_allclose(panel.difference, (s - t).norm(dim=0).numpy(), rtol=1e-6)


def test_pairs_follow_levels_and_teacher_lists():
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)
    values = {'loss_ofd': dict(student=[a, b], teacher=[a + 1, b + 1]),
              'loss_mt': dict(student=torch.randn(2, 10), teacher=[torch.randn(2, 10)] * 2),
              'loss_rel': dict(feats=a)}  # no teacher/student pair: skipped
    pairs = feature_pairs(values, sample=1)
    assert [p.name for p in pairs] == ['loss_ofd[0]', 'loss_ofd[1]', 'loss_mt[0]', 'loss_mt[1]']
    torch.testing.assert_close(pairs[1].teacher, b[1] + 1)
    assert pairs[2].student.shape == (2, 10)  # logits are shown whole, a row per image
    from mmkd.distillers import ConnectorRef, RecordRef
    refs = {'loss_ofd': dict(student=ConnectorRef('feats_s'),
                             teacher=RecordRef('teacher', 'feats')),
            'loss_mt': dict(student=RecordRef('student', 'logits'),
                            teacher=[RecordRef('r56', 'logits')])}
    assert [p.name for p in feature_pairs(values, names=['feats_s'], references=refs)] == \
        ['loss_ofd[0]', 'loss_ofd[1]']
    assert len(feature_pairs(values, names=['loss_mt'], references=refs)) == 2


# --------------------------------------------------------------------------- the tool
def _png_size(path: str):
    image = cv2.imread(path)
    assert image is not None, f'{path} is not a readable image'
    return image.shape


def test_tool_draws_a_classification_config(classification, tmp_path):
    out = str(tmp_path / 'feats.png')
    path, panels = vis_features.main([classification['config'], classification['checkpoint'],
                                      classification['image'], '--out', out])
    assert path == out and _png_size(out)[0] > 200
    panels = {p.name: p for p in panels}
    assert sorted(panels) == ['loss_hint', 'loss_kd']
    assert panels['loss_kd'].kind == 'matrix' and panels['loss_kd'].teacher.shape == (1, 10)
    # The teacher's map is the channel mean of its layer2 output on the image, computed
    # here from the pixels and the data preprocessor's constants.
    teacher = classification['teacher'].eval()
    x = (torch.from_numpy(classification['pixels']).float() - 72.94) / 90.02
    captured = []
    handle = teacher.backbone.layer2.register_forward_hook(
        lambda _m, _i, out: captured.append(out.detach()))
    with torch.no_grad():
        teacher(x[None, None], mode='tensor')
    handle.remove()
    hint = panels['loss_hint']
    np.testing.assert_allclose(hint.teacher, captured[0][0].mean(0).numpy(), rtol=1e-4,
                               atol=1e-5)
    assert hint.student.shape == hint.teacher.shape == (14, 14)


def test_tool_selects_records_and_refuses_an_unknown_one(classification, tmp_path):
    out = str(tmp_path / 'hint.png')
    _, panels = vis_features.main([classification['config'], classification['checkpoint'],
                                   classification['image'], '--out', out, '--records',
                                   'feat_s', '--reduce', 'pca'])
    assert [p.name for p in panels] == ['loss_hint'] and panels[0].kind == 'pca'
    with pytest.raises(ValueError, match='nothing to draw'):
        vis_features.main([classification['config'], classification['checkpoint'],
                           classification['image'], '--out', out, '--records', 'nope'])


def test_tool_draws_detection_fpn_levels(tmp_path):
    teacher = tiny_detector('retinanet', depth=18, base_channels=16)
    net = build_model_from_cfg(teacher, 'mmdet')
    net.init_weights()
    teacher_ckpt = save_state(net, tmp_path / 'teacher.pth')
    model = distill_model(osp.join(VOC_CONFIGS, 'fpn_retinanet_r50_r18_voc0712.py'),
                          tiny_detector('retinanet'), teacher, teacher_ckpt)
    cfg = voc_runner_cfg('retinanet', str(tmp_path / 'unused'), str(tmp_path), model,
                         image_size=96)
    config = str(tmp_path / 'fpn_tiny.py')
    Config(cfg).dump(config)
    checkpoint = save_state(build_model_from_config(Config(cfg)), tmp_path / 'epoch_1.pth')
    image = str(tmp_path / 'scene.jpg')
    cv2.imwrite(image, np.random.RandomState(0).randint(0, 255, (80, 120, 3), np.uint8))
    out = str(tmp_path / 'fpn.png')
    _, panels = vis_features.main([config, checkpoint, image, '--out', out,
                                   '--records', 'loss_fpn_p3', 'p4'])
    assert _png_size(out)[0] > 200
    assert [p.name for p in panels] == ['loss_fpn_p3', 'loss_fpn_p4']
    # The test pipeline resizes 80 x 120 to 64 x 96 (keeping the ratio); P3 has stride 8,
    # P4 stride 16.
    assert panels[0].teacher.shape == (8, 12) and panels[1].teacher.shape == (4, 6)


def test_tool_draws_segmentation_logits(tmp_path):
    cfg = Config.fromfile(SEG_CWD)
    teacher_cfg = copy.deepcopy(cfg.model.teacher.to_dict())
    from mmkd.distillers.builder import model_cfg_from
    net_cfg, scope = model_cfg_from(teacher_cfg, 'teacher')
    net = build_model_from_cfg(net_cfg, scope)
    net.init_weights()
    teacher_ckpt = save_state(net, tmp_path / 'teacher.pth')
    cfg.model.teacher.checkpoint = teacher_ckpt
    checkpoint = save_state(MODELS.build(cfg.model), tmp_path / 'iter_1.pth')
    image = str(tmp_path / 'scene.jpg')
    cv2.imwrite(image, np.random.RandomState(1).randint(0, 255, (64, 64, 3), np.uint8))
    out = str(tmp_path / 'logits.png')
    _, panels = vis_features.main([SEG_CWD, checkpoint, image, '--out', out, '--reduce', 'pca',
                                   '--teacher-checkpoint', teacher_ckpt])
    assert _png_size(out)[0] > 200
    assert [p.name for p in panels] == ['loss_cwd']
    assert panels[0].kind == 'pca' and panels[0].teacher.shape[-1] == 3
    assert panels[0].difference.shape == panels[0].teacher.shape[:2]
