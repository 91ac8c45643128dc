"""Detection distillation: real mmdet detectors, a VOC-format set on disk, real Runners."""
import glob
import json
import os.path as osp
import re
import runpy
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mmkd.distillers import DistillerConfigError, build_model_from_cfg, load_config
from mmkd.distillers.detection import STUDENT_ROIS
from mmkd.registry import MODELS

from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools', 'benchmark'))
sys.path.insert(0, osp.join(REPO, 'tools', 'model_converters'))
from detection_voc_synthetic import (  # noqa: E402
    VOC_CONFIGS,
    distill_model,
    family_of,
    tiny_detector,
    voc_runner_cfg,
)
from make_synthetic_voc_det import make_synthetic_voc_det  # noqa: E402

DETECTION_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'detection', '**', '*.py'),
                                     recursive=True))
#: The distillation configs, also those that inherit their distiller (MGD, FGD, PKD).
DISTILL_CONFIGS = [p for p in DETECTION_CONFIGS if 'teacher' in load_config(p).model]


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def voc_root(tmp_path_factory) -> str:
    """VOC2007-layout images, XML annotations and split lists."""
    return make_synthetic_voc_det(str(tmp_path_factory.mktemp('voc')), num_trainval=8,
                                  num_test=4, size=96)


@pytest.fixture(scope='module')
def teachers(tmp_path_factory) -> dict:
    """Per family: a tiny ResNet-50 teacher's model dict and a checkpoint file of it."""
    found = {}
    for family in ('retinanet', 'faster-rcnn'):
        model = tiny_detector(family, depth=50, base_channels=8)
        net = build_model_from_cfg(model, 'mmdet')
        net.init_weights()
        path = str(tmp_path_factory.mktemp('teacher') / f'{family}.pth')
        torch.save({'state_dict': net.state_dict()}, path)
        found[family] = (model, path)
    return found


def scalars(work_dir: str) -> list:
    lines = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            lines += [json.loads(line) for line in f]
    return lines


@pytest.fixture(scope='module')
def run(voc_root, teachers, tmp_path_factory):
    """Trains (once per module) the tiny student of a config for one epoch
    (two iterations), validating with VOC mAP; returns what the checks need."""
    done = {}

    def train(config: str) -> dict:
        if config not in done:
            family = family_of(config)
            teacher, checkpoint = teachers[family_of(config, 'teacher')]
            model = distill_model(config, tiny_detector(family), teacher, checkpoint)
            work_dir = str(tmp_path_factory.mktemp(osp.splitext(osp.basename(config))[0]))
            cfg = voc_runner_cfg(family, voc_root, work_dir, model, epochs=1, batch_size=4,
                                 image_size=96)
            cfg['custom_hooks'] = [dict(type='mmkd.TeacherEvaluationHook')]
            runner = Runner.from_cfg(Config(cfg))
            before = {k: v.clone() for k, v in runner.model.teacher.state_dict().items()}
            runner.train()
            done[config] = dict(runner=runner, before=before, work_dir=work_dir, cfg=cfg,
                                family=family, logged=scalars(work_dir))
        return done[config]

    return train


@pytest.mark.parametrize('config', DISTILL_CONFIGS, ids=lambda p: osp.basename(p))
def test_config_distils_a_tiny_detector_and_validates_with_voc_map(run, config):
    result = run(config)
    runner, logged = result['runner'], result['logged']
    model = runner.model
    after = model.teacher.state_dict()
    for key, value in result['before'].items():  # weights and BN statistics
        assert torch.equal(value, after[key]), key
    assert not model.teacher.training
    assert all(p.grad is None for p in model.teacher.parameters())

    names = list(model.distill_losses)
    train_lines = [line for line in logged if 'loss' in line]
    assert len(train_lines) == 2
    for line in train_lines:  # `loss` is the total: the detector's terms and distillation's
        parts = [v for k, v in line.items() if 'loss' in k and k != 'loss']
        assert line['loss'] == pytest.approx(sum(parts), rel=1e-5)
    for line in train_lines:
        for name in names:  # every level's loss is logged on its own
            assert name in line and line[name] >= 0 and line[name] == line[name], name
    assert sum(line[name] for line in train_lines for name in names) > 0
    if 'ofd' not in config:
        # One loss per FPN level: five, or four where the families' strides differ or the
        # authors of a two-stage method leave out the max-pooled P6 (MGD, FGD).
        across = family_of(config) != family_of(config, 'teacher')
        two_stage_p2_p5 = osp.basename(config).startswith(('mgd_faster', 'fgd_faster'))
        assert len(names) >= (4 if across or two_stage_p2_p5 else 5)
    val = [line for line in logged if 'pascal_voc/mAP' in line]
    assert val and 0 <= val[-1]['pascal_voc/mAP'] <= 1
    assert 'teacher/pascal_voc/mAP' in runner.message_hub.get_info('teacher_metrics')


def _one_batch(model, voc_root: str, family: str):
    cfg = voc_runner_cfg(family, voc_root, '/unused', model, batch_size=2, image_size=96)
    # No Runner has set the scope when this test runs alone: the dataset is mmdet's.
    with DefaultScope.overwrite_default_scope('mmdet'):
        loader = Runner.build_dataloader(Config(cfg).train_dataloader)
        return next(iter(loader))


def _distiller(config: str, teachers: dict):
    family = family_of(config)
    teacher, checkpoint = teachers[family_of(config, 'teacher')]
    return MODELS.build(Config(dict(model=distill_model(
        osp.join(VOC_CONFIGS, config), tiny_detector(family), teacher, checkpoint))).model)


def _count_calls(module, calls: list, name: str, rows: bool = False):
    def hook(_m, args, out):
        calls.append((name, args[0].shape[0]) if rows else name)
    return module.register_forward_hook(hook)


def test_teacher_stops_after_the_last_record(voc_root, teachers):
    # FPN records: backbone and neck only.
    model = _distiller('fpn_faster-rcnn_r50_r18_voc0712.py', teachers).train()
    calls = []
    _count_calls(model.teacher.rpn_head, calls, 'rpn_head')
    _count_calls(model.teacher.neck, calls, 'neck')
    data = model.data_preprocessor(_one_batch(model, voc_root, 'faster-rcnn'), True)
    assert data['inputs'].shape[-1] % 32 == 0  # batch padding of DetDataPreprocessor
    losses = model(**data, mode='loss')
    assert calls == ['neck']
    assert {f'loss_fpn_p{i}' for i in range(2, 7)} <= set(losses)

    # Dense-head logits: the box branch of the last level and NMS never run.
    model = _distiller('head-kd_retinanet_r50_r18_voc0712.py', teachers).train()
    calls = []
    _count_calls(model.teacher.bbox_head.retina_cls, calls, 'cls')
    _count_calls(model.teacher.bbox_head.retina_reg, calls, 'reg')
    data = model.data_preprocessor(_one_batch(model, voc_root, 'retinanet'), True)
    model(**data, mode='loss')
    assert calls.count('cls') == 5 and calls.count('reg') == 4


def test_roi_logits_are_compared_on_the_students_rois(voc_root, teachers):
    model = _distiller('roi-kd_faster-rcnn_r50_r18_voc0712.py', teachers).train()
    calls = []
    _count_calls(model.teacher.roi_head.bbox_head, calls, 'teacher_box', rows=True)
    _count_calls(model.student.roi_head.bbox_head, calls, 'student_box', rows=True)
    decoded = []
    model.teacher.rpn_head.predict_by_feat = lambda *a, **k: decoded.append(1)
    data = model.data_preprocessor(_one_batch(model, voc_root, 'faster-rcnn'), True)
    captured = {}
    original = model.compute_distill_losses

    def keep_records(data_samples=None):
        out = original(data_samples)
        captured['rois'] = model.student_records.recorders[STUDENT_ROIS].get()
        captured['t_cls'] = model.records['teacher']['roi_cls'].get()
        captured['s_cls'] = model.student_records.recorders['roi_cls'].get()
        return out

    model.compute_distill_losses = keep_records
    losses = model(**data, mode='loss')
    # The student sampled 64 RoIs per image; the teacher's box head ran once, on those.
    assert calls == [('student_box', 128), ('teacher_box', 128)]
    assert decoded == []  # the teacher never decoded its own proposals
    assert captured['t_cls'].shape == captured['s_cls'].shape == (128, 21)
    with torch.no_grad():
        feats = model.teacher.extract_feat(data['inputs'])
        direct = model.teacher.roi_head._bbox_forward(feats, captured['rois'])['cls_score']
    torch.testing.assert_close(captured['t_cls'], direct)
    assert losses['loss_roi_kd'] > 0 and losses['loss_roi_kd'].requires_grad


def test_roi_records_need_two_stage_detectors(teachers):
    family = 'retinanet'
    teacher, checkpoint = teachers[family]
    model = distill_model(osp.join(VOC_CONFIGS, 'roi-kd_faster-rcnn_r50_r18_voc0712.py'),
                          tiny_detector(family), teacher, checkpoint)
    model['recorders'] = dict(roi_cls=dict(type='ModuleOutputs', source='roi_head.bbox_head',
                                           item=0))
    model['losses'] = dict(loss_roi_kd=dict(type='KDLoss', student='roi_cls',
                                            teacher='roi_cls'))
    with pytest.raises((DistillerConfigError, KeyError), match='roi_head'):
        MODELS.build(Config(dict(model=model)).model)


def test_tools_test_reports_voc_map_and_export_loads_in_plain_mmdet(run, tmp_path):
    result = run(osp.join(VOC_CONFIGS, 'head-kd_retinanet_r50_r18_voc0712.py'))
    cfg, work_dir = Config(result['cfg']), result['work_dir']
    config_file = str(tmp_path / 'config.py')
    cfg.dump(config_file)
    checkpoint = osp.join(work_dir, 'epoch_1.pth')

    argv = sys.argv
    sys.argv = ['test.py', config_file, checkpoint, '--work-dir', str(tmp_path / 'test'),
                '--cfg-options', 'log_level=INFO']
    try:
        runpy.run_path(osp.join(REPO, 'tools', 'test.py'), run_name='__main__')
    finally:
        sys.argv = argv
    log = open(glob.glob(str(tmp_path / 'test' / '*' / '*.log'))[0]).read()
    assert 'teacher/pascal_voc/mAP' in log  # TeacherEvaluationHook, before testing
    assert re.search(r'Epoch\(test\).*\bpascal_voc/mAP: [01]\.\d+', log)  # the student

    from export_student import export_student
    exported = str(tmp_path / 'student.pth')
    export_student(checkpoint, exported)
    from mmengine.runner import load_checkpoint
    plain = build_model_from_cfg(tiny_detector('retinanet'), 'mmdet').eval()
    load_checkpoint(plain, exported, strict=True)
    state = torch.load(exported, weights_only=True)
    assert not any(k.startswith(('student.', 'teacher.', 'connectors.'))
                   for k in state['state_dict'])
    student = result['runner'].model.student.eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        for a, b in zip(plain(x, mode='tensor')[0], student(x, mode='tensor')[0]):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize('config', DETECTION_CONFIGS, ids=lambda p: osp.relpath(p, VOC_CONFIGS))
def test_every_detection_config_builds(config):
    cfg = load_config(config)
    model = cfg.model
    if 'teacher' in model:
        # No teacher weights here; no download of ImageNet weights either.
        model.teacher.update(checkpoint=None, backbone=dict(init_cfg=None))
        model.dry_run_shape = (3, 32, 32)
    net = build_model_from_cfg(model.to_dict(), cfg.get('default_scope'))
    if 'teacher' in model:
        assert len(net.distill_losses) >= 1
        assert cfg.val_evaluator.type == 'VOCMetric'


def test_sigmoid_kd_loss_is_a_binary_kl_over_levels():
    from mmkd.losses import ShapeMismatchError, SigmoidKDLoss
    loss = SigmoidKDLoss(tau=2.0, num_classes=4)
    t = [torch.randn(2, 3 * 4, 6, 6), torch.randn(2, 3 * 4, 3, 3)]
    assert loss(t, t).abs() < 1e-6  # no divergence from itself
    # Never below zero, even where student and teacher agree to round-off (a difference of
    # two nearly equal cross-entropies); many of these came out negative unclamped.
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        close = torch.randn(2, 3 * 4, 2, 2, generator=generator) * 1e-3
        nudged = close + torch.randn(close.shape, generator=generator) * 1e-6
        assert loss(nudged, close) >= 0
    s = [x.clone().requires_grad_() for x in (torch.randn_like(t[0]), torch.randn_like(t[1]))]
    value = loss(s, t)
    p_s, p_t = (torch.cat([x.flatten() for x in v]) / 2 for v in (s, t))
    expected = (p_t.sigmoid() * (torch.nn.functional.logsigmoid(p_t)
                                 - torch.nn.functional.logsigmoid(p_s))
                + (1 - p_t.sigmoid()) * (torch.nn.functional.logsigmoid(-p_t)
                                         - torch.nn.functional.logsigmoid(-p_s))).sum()
    anchors = (2 * 3 * 36 + 2 * 3 * 9)
    torch.testing.assert_close(value, expected * 4 / anchors)
    value.backward()
    # The gradient pulls each student logit towards the teacher's.
    assert ((s[0].grad * (s[0] - t[0])) >= 0).all()
    with pytest.raises(ShapeMismatchError, match='num_classes=5'):
        SigmoidKDLoss(num_classes=5)(t[0], t[0])
    with pytest.raises(ShapeMismatchError):
        loss(t[0], t[1])


def test_roi_records_refuse_a_resized_teacher(teachers):
    # The student's RoIs are in its image coordinates: a teacher on resized inputs would
    # pool its features at the wrong places.
    family = family_of('roi-kd_faster-rcnn_r50_r18_voc0712.py')
    teacher, checkpoint = teachers[family]
    model = distill_model(osp.join(VOC_CONFIGS, 'roi-kd_faster-rcnn_r50_r18_voc0712.py'),
                          tiny_detector(family), teacher, checkpoint)
    model['teacher']['input_size'] = (96, 96)
    with pytest.raises(DistillerConfigError, match=r'input_size=\(96, 96\).*neck / RPN'):
        MODELS.build(Config(dict(model=model)).model)
