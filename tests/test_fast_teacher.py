"""The teacher fast path (BN folding, channels-last, compile): exact, and invisible to
records, losses and checkpoints."""
import copy
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmkd.distillers import DistillerConfigError, RecordRef, load_config
from mmkd.distillers.builder import build_model_from_cfg, model_cfg_from
from mmkd.distillers.fast_teacher import (
    fast_path_settings,
    folded_convs,
    part_forwards,
    plain_copy,
    replace_parts,
    restore_parts,
)
from mmkd.distillers.memory_format import contiguous_only_modules
from mmkd.distillers.norm_mode import batch_statistics
from mmkd.distillers.teacher import indexed_tensors
from mmkd.registry import MODELS

from conftest import REPO, build_both, kd_model, runner_cfg, with_one_box

sys.path.insert(0, osp.join(REPO, 'tools', 'benchmark'))
from detection_voc_synthetic import VOC_CONFIGS, distill_model, tiny_detector  # noqa: E402

SEG = osp.join(REPO, 'configs', 'segmentation', 'synthetic_voc')


pytestmark = pytest.mark.usefixtures('one_thread')


def randomized_teacher(model: dict, path: str) -> dict:
    """A teacher entry whose checkpoint holds random weights and BN statistics
    (stored means, variances and affine parameters far from 0 and 1, so that a
    wrong fold shows)."""
    cfg, scope = model_cfg_from(model, 'teacher')
    net = build_model_from_cfg(cfg, scope)
    if hasattr(net, 'init_weights'):
        net.init_weights()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, _BatchNorm):
                shape = m.running_mean.shape
                m.running_mean.copy_(torch.randn(shape, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(shape, generator=generator) * 1.5 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.randn(shape, generator=generator) * 0.3 + 1)
                    m.bias.copy_(torch.randn(shape, generator=generator) * 0.3)
    torch.save(dict(state_dict=net.state_dict(), meta=dict()), path)
    return dict(model, checkpoint=path)


def both(model: dict) -> tuple:
    """The distiller with and without the teacher fast path, from the same seed."""
    return build_both(model, 'teacher_fast_path')


def tensors(value) -> list:
    """The tensors of a record (a tensor, or nested lists and tuples of them)."""
    return [tensor for _, tensor in indexed_tensors(value)]


def records_of(distiller, inputs, samples=None) -> dict:
    """Every teacher record of one dry-run-like pass (eval mode, no grad)."""
    distiller.train(False)
    with torch.no_grad():
        distiller._forward_nets(inputs, samples, 'tensor', run_teachers=True)
    found = {}
    resolve = distiller._resolver()  # reads records as the losses do
    for name, teacher in distiller.frozen_teachers.items():
        for record in teacher.records:
            found[f'{name}.{record}'] = [v.clone() for v in tensors(
                resolve(RecordRef(name, record)))]
    distiller._reset_records()
    return found


def assert_same_records(fast: dict, plain: dict, rtol: float = 1e-5) -> float:
    """Each record equal up to float32 round-off (relative to its magnitude);
    returns the largest relative difference."""
    assert fast.keys() == plain.keys()
    worst = 0.0
    for name in plain:
        items, got = tensors(plain[name]), tensors(fast[name])
        assert len(items) == len(got), name
        for a, b in zip(got, items):
            assert a.is_contiguous(), name  # read in the plain teacher's layout
            scale = float(b.abs().max())
            torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale, msg=name)
            worst = max(worst, float((a - b).abs().max()) / scale)
    return worst


# ------------------------------------------------------------------------ classifier
def _records_everywhere() -> dict:
    return dict(
        logits=dict(type='ModuleOutputs', source='head.fc'),
        bn_out=dict(type='ModuleOutputs', source='backbone.layer2.1.bn2'),  # += after it
        bn_in=dict(type='ModuleInputs', source='backbone.layer1.0.bn1'),  # conv1's output
        conv_out=dict(type='ModuleOutputs', source='backbone.layer3.0.conv2'),
        pre_relu=dict(type='StageFeatures', pre_relu=True))


def test_a_classifier_teacher_gives_the_plain_teachers_records(tiny_teacher):
    model = kd_model(tiny_teacher, teacher_recorders=_records_everywhere())
    fast, plain = both(model)
    path = fast.frozen_teachers['teacher'].fast_path
    folded = {pair.norm for pair in path.pairs}
    # Every BN is folded except where a record reads its input or its conv's output.
    norms = {p for p, m in fast.teacher.named_modules() if isinstance(m, _BatchNorm)}
    assert norms - folded == {'backbone.layer1.0.bn1', 'backbone.layer3.0.bn2'}
    assert path.channels_last and plain.frozen_teachers['teacher'].fast_path is None
    assert isinstance(fast.teacher.backbone.layer2[1].bn2, _BatchNorm)  # still a BN, in place

    x = torch.randn(8, 1, 28, 28) * 2 + 0.5
    worst = assert_same_records(records_of(fast, x), records_of(plain, x))
    assert worst < 1e-5
    # The records hold what the plain net computes: pre-ReLU features keep their negatives.
    pre_relu = records_of(fast, x)['teacher.pre_relu']
    assert all(bool((f < 0).any()) for f in pre_relu)

    # A hook added later on a folded conv sees the conv's own output (its pair unfolds).
    seen = []
    for model in (fast, plain):
        conv = model.teacher.backbone.layer1[1].conv1
        handle = conv.register_forward_hook(lambda _m, _a, out: seen.append(out.clone()))
        with torch.no_grad():
            model.teacher(x, mode='tensor')
        handle.remove()
    torch.testing.assert_close(seen[0], seen[1], rtol=1e-5, atol=1e-5)


def test_state_dict_load_and_plain_copy_see_the_teacher_as_built(tiny_teacher):
    fast, plain = both(kd_model(tiny_teacher, teacher_in_checkpoint=True))
    saved = torch.load(tiny_teacher['checkpoint'], weights_only=False)['state_dict']
    state = fast.teacher.state_dict()
    assert state.keys() == plain.teacher.state_dict().keys() == saved.keys()
    for key, value in saved.items():
        assert torch.equal(state[key], value), key
    assert not any('folded' in key for key in fast.state_dict())

    # teacher_in_checkpoint / resume: weights loaded later are folded again.
    with pytest.warns(UserWarning, match='randomly initialised'):
        fresh = MODELS.build(kd_model(dict(tiny_teacher, checkpoint=None),
                                      teacher_in_checkpoint=True))
    x = torch.randn(4, 1, 28, 28)
    before, = records_of(fresh, x)['teacher.logits']
    fresh.load_state_dict(fast.state_dict())
    after, = records_of(fresh, x)['teacher.logits']
    assert not torch.allclose(before, after)
    assert_same_records(records_of(fresh, x), records_of(plain, x))

    twin = plain_copy(fast.teacher)
    assert not folded_convs(twin) and not twin._forward_pre_hooks
    assert all(p.is_contiguous() for p in twin.parameters())
    assert all(type(m) in (nn.Conv2d, nn.BatchNorm2d) for m in twin.modules()
               if isinstance(m, (nn.Conv2d, _BatchNorm)))
    with torch.no_grad():
        torch.testing.assert_close(twin(x, mode='tensor'), plain.teacher(x, mode='tensor'),
                                   rtol=0, atol=0)
    assert folded_convs(fast.teacher)  # the copy left the teacher's fast path alone


def test_resume_loads_the_teacher_from_the_checkpoint_into_the_fast_path(
        tmp_path, fashion_mnist_root, tiny_teacher):
    cfg = runner_cfg(str(tmp_path), fashion_mnist_root,
                     kd_model(tiny_teacher, teacher_in_checkpoint=True), epochs=1,
                     train_samples=64, val_samples=32)
    first = Runner.from_cfg(Config(cfg))
    first.train()
    cfg = runner_cfg(str(tmp_path), fashion_mnist_root,
                     kd_model(dict(tiny_teacher, checkpoint=None), teacher_in_checkpoint=True),
                     epochs=1, train_samples=64, val_samples=32)
    cfg.update(load_from=osp.join(str(tmp_path), 'epoch_1.pth'), resume=True)
    with pytest.warns(UserWarning, match='randomly initialised'):
        second = Runner.from_cfg(Config(cfg))
    second.load_or_resume()
    x = torch.randn(4, 1, 28, 28)
    assert_same_records(records_of(second.model, x), records_of(first.model, x))


def test_batch_stats_teachers_keep_their_bn_and_folding_yields_to_training_bn(tiny_teacher):
    ofd = dict(
        recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
        connectors=dict(
            feats_s=dict(type='ConnectorList', connector=dict(type='ConvBNConnector'),
                         input='student.feats', like='teacher.feats'),
            feats_t=dict(type='MarginReLU', input='teacher.feats')),
        losses=dict(loss_ofd=dict(type='OFDLoss', student='feats_s', teacher='feats_t')))
    fast, plain = both(kd_model(tiny_teacher, teacher_norm='batch_stats', **ofd))
    assert fast.frozen_teachers['teacher'].fast_path.pairs == []
    assert not folded_convs(fast.teacher)
    x = torch.randn(8, 1, 28, 28)
    found = []
    for model in (fast, plain):
        model.train()  # the teacher's BNs on the batch's statistics
        model.run_teachers(x)
        found.append({'feats': model._resolver()(RecordRef('teacher', 'feats'))})
    assert_same_records(*found)

    # An eval-mode teacher is folded; a BN switched to batch statistics unfolds its pair.
    folded, _ = both(kd_model(tiny_teacher, **ofd))
    assert folded_convs(folded.teacher)
    with torch.no_grad(), batch_statistics(folded.teacher), batch_statistics(plain.teacher):
        torch.testing.assert_close(folded.teacher(x, mode='tensor'),
                                   plain.teacher(x, mode='tensor'), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('method', ['kd', 'ofd'])
def test_a_training_step_through_channels_last_records(tiny_teacher, method):
    extra = {}
    if method == 'ofd':  # MarginReLU takes the teacher's (channels-last) records
        extra = dict(
            recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
            connectors=dict(
                feats_s=dict(type='ConnectorList', connector=dict(type='ConvBNConnector'),
                              input='student.feats', like='teacher.feats'),
                feats_t=dict(type='MarginReLU', input='teacher.feats')),
            losses=dict(loss_ofd=dict(type='OFDLoss', student='feats_s', teacher='feats_t')))
    fast, plain = both(kd_model(tiny_teacher, **extra))
    assert fast.frozen_teachers['teacher'].fast_path.channels_last
    x = torch.randn(8, 1, 28, 28)
    samples = [DataSample().set_gt_label(i % 10) for i in range(8)]
    values = []
    for model in (fast, plain):
        model.train()
        losses = model(x, samples, mode='loss')
        sum(losses.values()).backward()
        grads = [p.grad.clone() for p in model.student.parameters()]
        values.append((losses, grads))
    (fast_losses, fast_grads), (plain_losses, plain_grads) = values
    for name in plain_losses:
        torch.testing.assert_close(fast_losses[name], plain_losses[name], rtol=1e-5, atol=1e-6)
    for a, b in zip(fast_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_compiled_parts_are_record_free_and_yield_to_new_hooks(tiny_teacher):
    fast, plain = both(kd_model(tiny_teacher))
    torch.manual_seed(0)
    compiled = MODELS.build(kd_model(tiny_teacher, teacher_fast_path=dict(
        compile=dict(backend='eager'))))
    path = compiled.frozen_teachers['teacher'].fast_path
    assert path.compiled == ['backbone']  # the head holds the logits record
    x = torch.randn(4, 1, 28, 28)
    assert_same_records(records_of(compiled, x), records_of(plain, x))
    assert path.build_seconds > 0

    calls = []
    handle = compiled.teacher.backbone.layer2.register_forward_hook(lambda *a: calls.append(1))
    records_of(compiled, x)
    handle.remove()
    assert calls == [1]  # a hook inside a compiled part runs (the part runs eagerly)

    # Copies: a deep copy compiles its own parts; a plain copy has none.
    twin = copy.deepcopy(compiled.teacher)
    assert twin.backbone.__dict__['forward'].module is twin.backbone
    with torch.no_grad():
        torch.testing.assert_close(twin(x, mode='tensor'), compiled.teacher(x, mode='tensor'))
    assert 'forward' not in plain_copy(compiled.teacher).backbone.__dict__


def assert_graph_ran(part: nn.Module, inputs: torch.Tensor) -> None:
    """``part`` ran a frozen graph on a batch of ``inputs``' shape."""
    forward = part.__dict__['forward']
    assert forward.failed is None and forward.graphs
    assert any(graph is not None and key[0][0] == tuple(inputs.shape)
               for key, graph in forward.chosen.items())


def test_the_frozen_backbone_is_exact_checked_per_shape_and_rebuilt_after_a_load(
        tiny_teacher, tmp_path):
    fast, plain = both(kd_model(tiny_teacher))
    path = fast.frozen_teachers['teacher'].fast_path
    assert path.frozen == ['backbone'] and 'frozen inference graphs' in path.describe()
    forward = fast.teacher.backbone.__dict__['forward']
    x = torch.randn(8, 1, 28, 28) * 2 + 0.5
    assert assert_same_records(records_of(fast, x), records_of(plain, x)) < 1e-5
    assert_graph_ran(fast.teacher.backbone, x)
    graph = forward.graphs[0]

    # Another batch size: checked against the eager part, then the same graph serves it.
    y = torch.randn(3, 1, 28, 28)
    assert_same_records(records_of(fast, y), records_of(plain, y))
    assert len(forward.chosen) == 2 and forward.graphs == [graph]

    # New weights (a load): the graphs are dropped and built again from them.
    other = randomized_teacher(tiny_teacher['model'], str(tmp_path / 'other.pth'))
    state = torch.load(other['checkpoint'], weights_only=True)['state_dict']
    for model in (fast, plain):
        model.teacher.load_state_dict(state)
    assert_same_records(records_of(fast, x), records_of(plain, x))
    assert forward.graphs and forward.graphs[0] is not graph

    # Gradients through the teacher's input: the eager part (a graph would drop them).
    with torch.enable_grad():
        out = fast.teacher.backbone(x.clone().requires_grad_())
    assert out[-1].requires_grad


def test_a_part_whose_trace_may_not_generalise_runs_eagerly():
    class Branchy(nn.Module):  # control flow that depends on values

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 1))

        def forward(self, x):
            y = self.body[0](x)
            return self.body[1](y) if bool(y.mean() > 0) else -y

    net = nn.Sequential(Branchy()).eval().requires_grad_(False)
    replace_parts(net, ['0'], 'freeze', {})
    forward = part_forwards(net)[0]
    with torch.no_grad():
        for sign in (1, -1, 1):
            x = sign * (torch.rand(2, 2, 5, 5) + 1)
            torch.testing.assert_close(net(x), Branchy.forward(net[0], x))
    assert 'may not generalise' in forward.failed and not forward.graphs
    restore_parts(net)
    assert not part_forwards(net) and 'forward' not in net[0].__dict__


def test_hooks_on_a_frozen_parts_root_run_once_per_call_and_may_stop_the_teacher():
    class Stop(BaseException):  # as the distiller's early stop once its records are complete
        pass

    body = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1))
    net = nn.Sequential(body, nn.Conv2d(4, 1, 1)).eval().requires_grad_(False)
    seen = []

    def record(_module, _args, out):  # a recorder on the part's own root
        seen.append(out.clone())
        raise Stop

    body.register_forward_hook(record)
    replace_parts(net, ['0'], 'freeze', {})
    forward = part_forwards(net)[0]
    with torch.no_grad():
        for batch in (3, 3, 5):
            x = torch.randn(batch, 2, 6, 6)
            with pytest.raises(Stop):
                net(x)
            torch.testing.assert_close(seen[-1], nn.Sequential.forward(body, x))
    assert len(seen) == 3  # never called by the trace or the checks
    assert len(forward.graphs) == 1 and len(forward.chosen) == 2 and forward.failed is None


def test_settings_are_checked():
    assert fast_path_settings(True) == dict(fold_bn=True, channels_last=True, freeze=True,
                                            compile=False)
    assert not any(fast_path_settings(False).values())
    assert fast_path_settings(dict(channels_last=False))['fold_bn'] is True
    for bad in (dict(fold=True), dict(compile='yes'), dict(freeze=1), 'fast'):
        with pytest.raises(DistillerConfigError, match='teacher_fast_path'):
            fast_path_settings(bad)


# ------------------------------------------------------------------------ detection
def test_a_retinanet_teacher_gives_the_plain_teachers_fpn_and_head_records(tmp_path):
    config = osp.join(VOC_CONFIGS, 'head-kd_retinanet_r50_r18_voc0712.py')
    teacher = randomized_teacher(tiny_detector('retinanet', depth=50, base_channels=8),
                                 str(tmp_path / 'retinanet.pth'))
    model = distill_model(config, tiny_detector('retinanet'), teacher, teacher['checkpoint'])
    fpn = {f'p{i}': dict(type='ModuleOutputs', source='neck', item=i - 3) for i in (3, 4)}
    model['teacher_recorders'] = dict(model.get('teacher_recorders') or {}, **fpn)
    fast, plain = both(Config(dict(model=model)).model)
    path = fast.frozen_teachers['teacher'].fast_path
    assert path.channels_last and len(path.pairs) == sum(
        isinstance(m, _BatchNorm) for m in fast.teacher.modules())
    assert path.frozen == ['backbone']  # the FPN and the head hold records
    x = torch.randn(2, 3, 96, 96)
    samples = fast.dry_run_samples(x)
    worst = assert_same_records(records_of(fast, x, samples), records_of(plain, x, samples))
    assert worst < 1e-5
    assert_graph_ran(fast.teacher.backbone, x)

    # A training step through the FPN MSE losses on channels-last records.
    mse = distill_model(osp.join(VOC_CONFIGS, 'fpn_retinanet_r50_r18_voc0712.py'),
                        tiny_detector('retinanet'), teacher, teacher['checkpoint'])
    fast, plain = both(Config(dict(model=mse)).model)
    from mmdet.structures.bbox import HorizontalBoxes  # noqa: F401  (mmdet's box types)
    with_one_box(samples)
    found = []
    for model in (fast, plain):
        model.train()
        losses = model(x, samples, mode='loss')
        found.append({k: v for k, v in losses.items() if k.startswith('loss_fpn')})
    assert len(found[0]) == 5
    for name in found[1]:
        torch.testing.assert_close(found[0][name], found[1][name], rtol=1e-5, atol=1e-7)


def test_a_two_stage_teacher_folds_and_stays_contiguous_for_roi_align(tmp_path):
    config = osp.join(VOC_CONFIGS, 'roi-kd_faster-rcnn_r50_r18_voc0712.py')
    teacher = randomized_teacher(tiny_detector('faster-rcnn', depth=50, base_channels=8),
                                 str(tmp_path / 'frcnn.pth'))
    model = distill_model(config, tiny_detector('faster-rcnn'), teacher, teacher['checkpoint'])
    fast, plain = both(Config(dict(model=model)).model)
    path = fast.frozen_teachers['teacher'].fast_path
    assert contiguous_only_modules(fast.teacher)  # mmcv's RoIAlign reads NCHW memory
    assert not path.channels_last and path.pairs
    x = torch.randn(2, 3, 96, 96)
    samples = fast.dry_run_samples(x)
    assert_same_records(records_of(fast, x, samples), records_of(plain, x, samples))
    assert path.frozen == ['backbone']
    assert_graph_ran(fast.teacher.backbone, x)


# ------------------------------------------------------------------------ segmentation
def test_a_deeplabv3plus_teacher_gives_the_plain_teachers_records(tmp_path):
    cfg = load_config(osp.join(SEG, 'cwd_deeplabv3plus_r18w16-r18w8-d8_synthetic-voc-64x64.py'))
    model = cfg.model.to_dict()
    model['teacher'] = randomized_teacher(dict(cfg_path=model['teacher']['cfg_path']),
                                          str(tmp_path / 'deeplab.pth'))
    model['teacher_recorders'] = dict(feats=dict(type='StageFeatures', pre_relu=True),
                                      aspp=dict(type='ModuleOutputs',
                                                source='decode_head.bottleneck'))
    fast, plain = both(Config(dict(model=model)).model)
    path = fast.frozen_teachers['teacher'].fast_path
    assert path.channels_last and len(path.pairs) > 20
    x = torch.randn(2, 3, 64, 64)
    worst = assert_same_records(records_of(fast, x), records_of(plain, x))
    assert worst < 1e-5
