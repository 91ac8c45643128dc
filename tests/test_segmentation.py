"""Segmentation distillation with mmseg: losses on hand-computed examples, the VOC
configs on a small VOC-format set on disk, with tiny segmentors in real runners."""
import copy
import glob
import json
import math
import os.path as osp
import uuid

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmkd.distillers import load_config
from mmkd.losses import ChannelWiseDivergence, PixelWiseKDLoss, ShapeMismatchError
from mmkd.registry import MODELS

from conftest import REPO

VOC = osp.join(REPO, 'configs', 'segmentation', 'voc')
SIZE = 64


def samples(labels: torch.Tensor) -> list:
    return [SegDataSample(gt_sem_seg=PixelData(data=lab[None])) for lab in labels]


# --------------------------------------------------------------------------- losses
KL_34 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL((3/4, 1/4) || (1/2, 1/2))


def test_pixel_kd_against_a_hand_computed_example_ignores_255():
    # Two pixels, two classes. Pixel 0: teacher (3/4, 1/4), student uniform.
    # Pixel 1: far apart, but labelled 255.
    teacher = torch.tensor([[math.log(3), 5.0], [0.0, -5.0]]).reshape(1, 2, 1, 2)
    student = torch.zeros(1, 2, 1, 2, requires_grad=True)
    labels = torch.tensor([[[1, 255]]])
    kl_1 = F.kl_div(F.log_softmax(student[0, :, 0, 1], 0), F.log_softmax(teacher[0, :, 0, 1], 0),
                    reduction='sum', log_target=True).item()
    # The official normalisation (the default): the sum over the kept pixels / (H * W = 2).
    loss = PixelWiseKDLoss(tau=1.0)
    assert loss(student, teacher, samples(labels)).item() == pytest.approx(KL_34 / 2, rel=1e-5)
    # Without labels (as in the distiller's dry run) both pixels count.
    assert loss(student, teacher).item() == pytest.approx((KL_34 + kl_1) / 2, rel=1e-5)
    # normalize='pixels': the mean over the kept pixels (one here).
    mean = PixelWiseKDLoss(tau=1.0, normalize='pixels')
    assert mean(student, teacher, samples(labels)).item() == pytest.approx(KL_34, rel=1e-5)
    assert mean(student, teacher).item() == pytest.approx((KL_34 + kl_1) / 2, rel=1e-5)
    # tau: logits divided by tau, KL times tau^2; weight multiplies.
    weighted = PixelWiseKDLoss(tau=2.0, loss_weight=3.0)
    value = weighted(student, teacher * 2, samples(labels))
    assert value.item() == pytest.approx(3 * 4 * KL_34 / 2, rel=1e-5)
    # An all-ignored batch gives 0 and still back-propagates.
    for form in (loss, mean):
        zero = form(student, teacher, samples(torch.full((1, 1, 2), 255)))
        zero.backward()
        assert zero.item() == 0 and torch.equal(student.grad, torch.zeros_like(student))
    with pytest.raises(ValueError, match='normalize must be one of'):
        PixelWiseKDLoss(normalize='batch')


def test_pixel_kd_is_the_official_sum_over_the_batch_divided_by_h_w():
    # The official CriterionPixelWise, written out again in float64 on random logits:
    # sum over N*H*W pixels of sum_c -p_t log p_s, divided by W*H; as a KL it differs by
    # the teacher's entropy (the same sum of -p_t log p_t / (H W)).
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(3, 5, 4, 6, generator=gen)
    teacher = torch.randn(3, 5, 4, 6, generator=gen)
    p_t = torch.softmax(teacher.double(), 1)
    cross_entropy = -(p_t * torch.log_softmax(student.double(), 1)).sum() / (4 * 6)
    entropy = -(p_t * p_t.log()).sum() / (4 * 6)
    value = PixelWiseKDLoss(tau=1.0, loss_weight=10.0)(student, teacher)
    assert value.item() == pytest.approx(10 * (cross_entropy - entropy).item(), rel=1e-5)
    # N times the per-pixel mean of mmkd before issue #19.
    mean = PixelWiseKDLoss(tau=1.0, loss_weight=10.0, normalize='pixels')(student, teacher)
    assert value.item() == pytest.approx(3 * mean.item(), rel=1e-5)
    # With an ignore label, the ignored pixels drop out of the sum, not out of H * W.
    labels = torch.randint(0, 3, (3, 4, 6), generator=gen)
    labels[:, :2] = 255
    kl = (p_t * (p_t.log() - torch.log_softmax(student.double(), 1))).sum(1)  # (N, H, W)
    masked = (kl * (labels != 255)).sum() / (4 * 6)
    assert PixelWiseKDLoss()(student, teacher, samples(labels)).item() == pytest.approx(
        masked.item(), rel=1e-5)


def test_pixel_kd_reads_labels_at_the_logits_size():
    # Labels at 4x the logits' size (as mmseg's are): nearest sampling picks the ignores.
    teacher = torch.tensor([[math.log(3), 0.0], [0.0, 0.0]]).reshape(1, 2, 1, 2)
    student = torch.zeros(1, 2, 1, 2)
    labels = torch.zeros(1, 4, 8, dtype=torch.long)
    labels[:, :, 4:] = 255
    value = PixelWiseKDLoss()(student, teacher, samples(labels))
    assert value.item() == pytest.approx(KL_34 / 2, rel=1e-5)  # one of H * W = 2 pixels kept
    with pytest.raises(ValueError, match='gt_sem_seg'):
        PixelWiseKDLoss()(student, teacher, [SegDataSample()])


def test_cwd_against_a_hand_computed_example():
    # Channel 0: teacher (3/4, 1/4) over the two positions, student uniform;
    # channel 1: the same map in both nets (KL 0). Average over N * C = 2 channels.
    teacher = torch.tensor([[math.log(3), 0.0], [1.0, 2.0]]).reshape(1, 2, 1, 2)
    student = torch.tensor([[0.0, 0.0], [1.0, 2.0]]).reshape(1, 2, 1, 2)
    assert ChannelWiseDivergence(tau=1.0)(student, teacher).item() == pytest.approx(
        KL_34 / 2, rel=1e-5)
    # tau = 2 on doubled logits gives the same distributions, times tau^2.
    value = ChannelWiseDivergence(tau=2.0, loss_weight=3.0)(student * 2, teacher * 2)
    assert value.item() == pytest.approx(3 * 4 * KL_34 / 2, rel=1e-5)
    # The softmax runs over positions, not classes: a per-channel constant changes nothing.
    shifted = student + torch.tensor([5.0, -2.0]).reshape(1, 2, 1, 1)
    assert ChannelWiseDivergence()(shifted, teacher).item() == pytest.approx(KL_34 / 2, rel=1e-5)


@pytest.mark.parametrize('loss', [ChannelWiseDivergence(tau=4.0), PixelWiseKDLoss(tau=2.0)])
def test_logits_of_different_sizes_are_resized(loss):
    student = torch.randn(2, 5, 4, 4, requires_grad=True)  # output stride 16
    teacher = torch.randn(2, 5, 8, 8)  # output stride 8
    up = F.interpolate(student, size=(8, 8), mode='bilinear', align_corners=False)
    assert loss(student, teacher).item() == pytest.approx(loss(up, teacher).item(), rel=1e-5)
    loss(student, teacher).backward()
    assert student.grad.abs().sum() > 0
    down = F.interpolate(teacher, size=(4, 4), mode='bilinear', align_corners=False)
    loss.resize = 'student'
    assert loss(student, teacher).item() == pytest.approx(loss(student, down).item(), rel=1e-5)
    loss.resize = 'larger'
    with pytest.raises(ShapeMismatchError, match=r'same N and C.*\(2, 5, 4, 4\).*\(2, 6, 8, 8\)'):
        loss(student, torch.randn(2, 6, 8, 8))


# --------------------------------------------------------------------------- data and nets
@pytest.fixture(scope='module')
def voc_root(tmp_path_factory) -> str:
    """A VOC-format set on disk: data/VOCdevkit as the configs expect it."""
    from make_synthetic_voc import make_synthetic_voc
    return make_synthetic_voc(str(tmp_path_factory.mktemp('VOCdevkit')), num_train=12,
                              num_val=6, num_aug=4, size=SIZE)


def tiny(family: str, width: int, stride16: bool = False) -> dict:
    """Overrides that turn a VOC ResNet segmentor into a tiny one (stages width..8*width)."""
    backbone = dict(depth=18, stem_channels=width, base_channels=width)
    if stride16:
        backbone.update(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2))
    head = dict(in_channels=8 * width, channels=2 * width)
    if family == 'deeplabv3plus':
        head.update(c1_in_channels=width, c1_channels=4, dilations=(1, 2, 3, 4))
    return dict(pretrained=None, backbone=backbone, decode_head=head,
                auxiliary_head=dict(in_channels=4 * width, channels=width))


def teacher_cfg_path(family: str) -> str:
    return f'mmseg::{family}/{family}_r101-d8_4xb4-40k_voc12aug-512x512.py'


@pytest.fixture(scope='module')
def teachers(tmp_path_factory) -> dict:
    """An initialised tiny teacher of each family, saved as an MMEngine checkpoint."""
    from mmkd.distillers.builder import build_model_from_cfg, model_cfg_from
    out = {}
    folder = tmp_path_factory.mktemp('teachers')
    for family in ('deeplabv3plus', 'pspnet'):
        cfg, scope = model_cfg_from(dict(cfg_path=teacher_cfg_path(family),
                                         **tiny(family, 16)), 'teacher')
        net = build_model_from_cfg(cfg, scope)
        net.init_weights()
        path = str(folder / f'{family}.pth')
        torch.save(dict(state_dict=net.state_dict(), meta=dict()), path)
        out[family] = path
    return out


def shrink_data(node, data_root: str):
    """Point the VOC loaders at ``data_root`` and scale the pipelines to 64 px."""
    if isinstance(node, dict):
        kind = node.get('type')
        if kind in ('RandomResize', 'Resize'):
            node['scale'] = (4 * SIZE, SIZE)
        elif kind == 'RandomCrop':
            node['crop_size'] = (SIZE, SIZE)
        elif kind == 'Pad':
            node['size'] = (SIZE, SIZE)
        if 'data_root' in node:
            node['data_root'] = data_root
        for value in node.values():
            shrink_data(value, data_root)
    elif isinstance(node, list):
        for value in node:
            shrink_data(value, data_root)


def tiny_run_cfg(config: str, work_dir: str, data_root: str, teacher_ckpt: str,
                 stride16: bool = False, iters: int = 4) -> Config:
    """A VOC distillation config run on the small set with tiny nets, for ``iters`` steps."""
    cfg = load_config(osp.join(VOC, config))
    family = 'pspnet' if 'pspnet' in config else 'deeplabv3plus'
    model = cfg.model.to_dict()
    model['student'].update(tiny(family, 8, stride16))
    model['teacher'].update(tiny(family, 16), checkpoint=teacher_ckpt)
    cfg.model = model
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=4 if split == 'train' else 1, num_workers=0,
                      persistent_workers=False)
        shrink_data(loader, data_root)
    cfg.data_preprocessor.size = (SIZE, SIZE)
    cfg.train_cfg.update(max_iters=iters, val_interval=iters)
    cfg.param_scheduler[0].update(end=iters)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = iters
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    run = f'test_{uuid.uuid4().hex[:12]}'
    cfg.visualizer.name = run  # mmseg names its visualizer instance; one per run here
    cfg.update(work_dir=work_dir, log_level='WARNING', experiment_name=run)
    return cfg


def scalars(work_dir: str) -> list:
    found = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            found += [json.loads(line) for line in f]
    return found


def train_and_check(runner: Runner, loss_name: str) -> Runner:
    teacher = runner.model.teacher
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    runner.train()
    for key, value in teacher.state_dict().items():  # weights and BN statistics
        assert torch.equal(value, before[key]), key
    assert not teacher.training
    logged = scalars(runner.work_dir)
    steps = [line for line in logged if loss_name in line]
    assert len(steps) == runner.max_iters
    assert all(line[loss_name] > 0 and 'decode.loss_ce' in line and 'aux.loss_ce' in line
               for line in steps)
    for line in steps:  # `loss` is the total: the segmentor's terms and distillation's
        parts = [v for k, v in line.items() if 'loss' in k and k != 'loss']
        assert line['loss'] == pytest.approx(sum(parts), rel=1e-5)
    # Validation runs the student's predict mode through mmseg's IoUMetric.
    val = [line for line in logged if 'mIoU' in line]
    assert val and 0 <= val[-1]['mIoU'] <= 100
    assert 0 <= runner.message_hub.get_info('teacher_metrics')['teacher/mIoU'] <= 100
    return runner


# --------------------------------------------------------------------------- runs
def test_ofd_deeplabv3plus_runs_on_voc_format_data(tmp_path, voc_root, teachers):
    cfg = tiny_run_cfg('ofd_deeplabv3plus_r101-r18-d8_4xb4-40k_voc12aug-512x512.py',
                       str(tmp_path), voc_root, teachers['deeplabv3plus'])
    runner = Runner.from_cfg(cfg)
    model = runner.model
    # Four stages; connectors 8w..64w -> 16w..128w; margins from the teacher's BNs.
    assert [c.conv.out_channels for c in model.connectors['feats_s'].items] == [16, 32, 64, 128]
    assert len(model.connectors['feats_t'].margins()) == 4

    # One step by hand: the teacher runs its backbone only, the student its own losses.
    calls = []
    handles = [module.register_forward_hook(lambda *a, name=name: calls.append(name))
               for name, module in (('teacher decode', model.teacher.decode_head.conv_seg),
                                    ('teacher aux', model.teacher.auxiliary_head.conv_seg),
                                    ('student aux', model.student.auxiliary_head.conv_seg))]
    data_samples = samples(torch.randint(0, 3, (2, SIZE, SIZE)))
    losses = model(torch.randn(2, 3, SIZE, SIZE), data_samples, mode='loss')
    for handle in handles:
        handle.remove()
    assert calls == ['student aux']
    assert {'loss_ofd', 'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    train_and_check(runner, 'loss_ofd')


def test_cwd_pspnet_and_tools_test_and_export(tmp_path, voc_root, teachers):
    cfg = tiny_run_cfg('cwd_pspnet_r101-r18-d8_4xb4-40k_voc12aug-512x512.py',
                       str(tmp_path / 'run'), voc_root, teachers['pspnet'])
    runner = train_and_check(Runner.from_cfg(cfg), 'loss_cwd')
    ckpt = osp.join(cfg.work_dir, 'iter_4.pth')

    # tools/test.py on the distillation config reports the student's mIoU.
    import sys
    sys.path.insert(0, osp.join(REPO, 'tools'))
    sys.path.insert(0, osp.join(REPO, 'tools', 'model_converters'))
    import test as test_tool
    config_file = str(tmp_path / 'cwd_tiny.py')
    cfg.experiment_name = f'test_{uuid.uuid4().hex[:12]}'
    cfg.dump(config_file)
    argv = sys.argv
    sys.argv = ['test.py', config_file, ckpt, '--work-dir', str(tmp_path / 'test'),
                '--no-teacher']
    try:
        test_tool.main()
    finally:
        sys.argv = argv
    tested = [json.loads(line) for path in glob.glob(str(tmp_path / 'test' / '*' / '*.json'))
              for line in open(path)]
    assert tested and 0 <= tested[-1]['mIoU'] <= 100

    # The exported student is a plain mmseg checkpoint that predicts as the distiller does.
    from export_student import export_student
    from mmengine.runner import load_checkpoint

    from mmkd.distillers.builder import build_model_from_cfg, model_cfg_from
    dst = str(tmp_path / 'student.pth')
    export_student(ckpt, dst)
    student_cfg = copy.deepcopy(load_config(osp.join(VOC, 'cwd_pspnet_r101-r18-d8_4xb4-40k_'
                                                     'voc12aug-512x512.py')).model.student)
    plain_cfg, scope = model_cfg_from(dict(student_cfg, **tiny('pspnet', 8)), 'student')
    assert scope == 'mmseg' and plain_cfg['type'] == 'EncoderDecoder'
    plain = build_model_from_cfg(plain_cfg, scope).eval()
    state = load_checkpoint(plain, dst, map_location='cpu', strict=True)
    assert 'aeroplane' in state['meta']['dataset_meta']['classes']
    x = torch.randn(2, 3, SIZE, SIZE)
    distiller = runner.model.eval()
    with torch.no_grad():
        assert torch.allclose(plain(x, mode='tensor'), distiller(x, mode='tensor'), atol=1e-5)


def test_pixel_kd_with_a_stride_16_student(voc_root, teachers):
    # MMRazor issue #367: a student with another output stride than the teacher's.
    # (PSPNet: its logits have the backbone's stride; DeepLabV3+'s decoder is at stride 4.)
    cfg = tiny_run_cfg('pkd_pspnet_r101-r18-d8_4xb4-40k_voc12aug-512x512.py',
                       '/nonexistent', voc_root, teachers['pspnet'], stride16=True)
    model = MODELS.build(cfg.model)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert model.teacher(x, mode='tensor').shape[-2:] == (SIZE // 8, SIZE // 8)
        assert model.student(x, mode='tensor').shape[-2:] == (SIZE // 16, SIZE // 16)
    labels = torch.randint(0, 3, (2, SIZE, SIZE))
    labels[:, :, : SIZE // 2] = 255
    losses = model(x, samples(labels), mode='loss')
    assert losses['loss_pkd'] > 0
    losses['loss_pkd'].backward()
    assert model.student.decode_head.conv_seg.weight.grad.abs().sum() > 0
    # The ignored half of the image does not count: changing the teacher there changes nothing.
    loss = model.distill_losses['loss_pkd']
    t_logits = torch.randn(2, 21, SIZE // 8, SIZE // 8)
    s_logits = torch.randn(2, 21, SIZE // 16, SIZE // 16)
    changed = t_logits.clone()
    changed[..., : SIZE // 16] += 10 * torch.randn_like(changed[..., : SIZE // 16])
    assert torch.allclose(loss(s_logits, t_logits, samples(labels)),
                          loss(s_logits, changed, samples(labels)))


# --------------------------------------------------------------------------- configs
SEG_CONFIGS = sorted(osp.relpath(p, osp.join(REPO, 'configs', 'segmentation'))
                     for p in glob.glob(osp.join(REPO, 'configs', 'segmentation', '**', '*.py'),
                                        recursive=True) if '_base_' not in p)


@pytest.fixture(scope='module')
def teacher_checkpoint(tmp_path_factory):
    """Checkpoint of a randomly initialised model of a teacher config (one per config)."""
    from mmkd.distillers.builder import build_model_from_cfg, model_cfg_from
    folder = tmp_path_factory.mktemp('config_teachers')
    saved = {}

    def get(cfg_path: str) -> str:
        if cfg_path not in saved:
            cfg, scope = model_cfg_from(dict(cfg_path=cfg_path, pretrained=None), 'teacher')
            saved[cfg_path] = str(folder / f'{len(saved)}.pth')
            torch.save(dict(state_dict=build_model_from_cfg(cfg, scope).state_dict()),
                       saved[cfg_path])
        return saved[cfg_path]
    return get


@pytest.mark.parametrize('name', SEG_CONFIGS)
def test_segmentation_configs_build_their_models(name, teacher_checkpoint):
    cfg = load_config(osp.join(REPO, 'configs', 'segmentation', name))
    model = cfg.model.to_dict()
    if model['type'] != 'SingleTeacherDistiller':
        model.update(pretrained=None, _scope_='mmseg')
        assert type(MODELS.build(model)).__name__ == 'EncoderDecoder'
        return
    teacher = model['teacher']
    assert teacher['checkpoint'].startswith('checkpoints/' if name.startswith('voc')
                                            else 'work_dirs/zoo/')
    family = 'pspnet' if 'pspnet' in name else 'deeplabv3plus'
    assert family in teacher['cfg_path'] and family in model['student']['cfg_path']
    # A random teacher of the same config: the wiring is what is tested (32 px: a short
    # dry run of the ResNet-101s).
    teacher.update(checkpoint=teacher_checkpoint(teacher['cfg_path']))
    model.update(dry_run_shape=(3, 32, 32))
    distiller = MODELS.build(model)
    assert distiller.student.backbone.depth == 18
    assert distiller.teacher.backbone.depth == (101 if name.startswith('voc') else 18)
    # OFD's segmentation code runs the teacher with BN on batch statistics (t_net.train()).
    norm = distiller.frozen_teachers['teacher'].norm
    assert norm == ('batch_stats' if 'ofd' in osp.basename(name) else 'eval'), name
    for loss in distiller.distill_losses.values():  # the official normalisation
        assert getattr(loss, 'normalize', 'spatial') == 'spatial', name
    assert cfg.default_scope == 'mmkd' and cfg.train_dataloader.dataset['_scope_'] == 'mmseg'
