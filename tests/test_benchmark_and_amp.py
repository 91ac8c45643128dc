"""The overhead benchmark on tiny real configs, and AMP (bf16 autocast) on CPU."""
import argparse
import copy
import importlib.util
import json
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mmkd.benchmark import (
    BenchContext,
    KDReference,
    Leg,
    count_parameters,
    kd_reference,
    legs_for,
    member_optim_wrapper,
    time_legs,
)
from mmkd.engine import MixedPrecisionOptimWrapper, mixed_precision_cfg
from mmkd.registry import MODELS

from conftest import REPO, STUDENT_WIDTHS, kd_model, runner_cfg, tiny_classifier


def load_tool(*parts: str):
    """A script under tools/ as a module (tools/ is not a package)."""
    path = osp.join(REPO, 'tools', *parts)
    spec = importlib.util.spec_from_file_location(osp.splitext(parts[-1])[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_config(tmp_path, cfg: dict, name: str = 'cfg.py') -> str:
    path = str(tmp_path / name)
    Config(cfg).dump(path)
    return path


# ------------------------------------------------------------------ overhead tool
def test_overhead_tool_prints_each_leg_and_the_ratio(tmp_path, fashion_mnist_root,
                                                     tiny_teacher, capsys):
    cfg = runner_cfg(str(tmp_path), fashion_mnist_root, kd_model(tiny_teacher))
    out = str(tmp_path / 'overhead.json')
    figures = load_tool('benchmark', 'distill_overhead.py').main(
        [write_config(tmp_path, cfg), '--batch-size', '16', '--warmup', '1', '--iters', '3',
         '--out', out])
    printed = capsys.readouterr().out

    for label in ('(a) student train step', '(b) teacher inference', '(c) distillation step',
                  '(r) student train step, as built', '(r) teacher inference, plain',
                  '(r) hand-written KD step'):
        assert label in printed
    ratio = float(re.search(r'ratio c / \(a \+ b\) = (\d+\.\d+)', printed).group(1))
    with open(out) as f:
        saved = json.load(f)
    legs = {leg['name']: leg for leg in saved['legs']}
    assert sorted(legs) == ['distill', 'plain:student', 'plain:teacher', 'reference',
                            'student', 'teacher']
    # The reference legs are printed against their legs, not added to the limit.
    for leg, ref, label in (('distill', 'reference', r'\(c\) distillation step / '
                                                    r'\(r\) hand-written KD step'),
                            ('student', 'plain:student', r'\(a\) student train step / '
                                                         r'\(r\) student train step, as built'),
                            ('teacher', 'plain:teacher', r'\(b\) teacher inference / '
                                                         r'\(r\) teacher inference, plain')):
        shown = float(re.search(label + r' = (\d+\.\d+); per batch', printed).group(1))
        expected = legs[leg]['median'] / legs[ref]['median']
        assert shown == pytest.approx(expected, abs=6e-4)  # printed to 3 decimals
        assert any(r['reference'] == ref and r['ratio'] == pytest.approx(expected)
                   for r in saved['references'])
    assert all(len(leg['times']) == 3 and leg['peak_memory'] is not None
               for leg in legs.values())
    expected = legs['distill']['median'] / (legs['student']['median']
                                            + legs['teacher']['median'])
    assert saved['ratio'] == pytest.approx(expected)
    assert ratio == pytest.approx(expected, abs=6e-4)  # printed to 3 decimals
    assert figures['ratio'] == saved['ratio']

    student = MODELS.build(tiny_classifier(depth=8, widths=(4, 4, 8, 8)))
    assert saved['parameters']['student'] == sum(p.numel() for p in student.parameters())
    assert saved['parameters']['connectors'] == 0
    assert saved['parameters']['extra_trainable'] == 0
    assert saved['settings']['batch_size'] == 16

    # The README tables are made from such files.
    table = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'analysis',
                                                     'summarize_overheads.py'), out],
                           capture_output=True, text=True, check=True).stdout
    assert f'| cfg.py | {saved["ratio"]:.2f} | {saved["ratio_per_batch_median"]:.2f} | 0 |' \
        in table
    # ... and the fast path's tables: runs as columns, each leg against its reference.
    for run in (1, 2):
        shutil.copy(out, tmp_path / f'kd_run{run}.json')
    page = tmp_path / 'page.md'
    page.write_text('before\n<!-- fast-path:start -->\nold\n<!-- fast-path:end -->\nafter\n')
    subprocess.run([sys.executable, osp.join(REPO, 'tools', 'analysis', 'summarize_overheads.py'),
                    '--references', str(tmp_path / 'kd_run1.json'),
                    str(tmp_path / 'kd_run2.json'), '--out', str(page)], check=True,
                   capture_output=True)
    written = page.read_text()
    for reference in ('plain:teacher', 'plain:student'):
        found = next(r for r in saved['references'] if r['reference'] == reference)
        low, high = found['ratio_per_batch_iqr']
        expected = (f'{found["ratio"]:.2f} ({found["ratio_per_batch_median"]:.2f}, '
                    f'{low:.2f}-{high:.2f})')
        assert f'| kd | {expected} | {expected} |' in written
    assert 'old' not in written and written.startswith('before') and 'after' in written


def test_overhead_of_a_plain_config_is_the_training_step_alone(tmp_path, fashion_mnist_root,
                                                               capsys):
    cfg = runner_cfg(str(tmp_path), fashion_mnist_root, tiny_classifier())
    figures = load_tool('benchmark', 'distill_overhead.py').main(
        [write_config(tmp_path, cfg), '--batch-size', '8', '--warmup', '0', '--iters', '2',
         '--no-memory'])
    printed = capsys.readouterr().out
    assert [leg['name'] for leg in figures['legs']] == ['student']
    assert figures['ratio'] is None and 'ratio' not in printed
    assert '(a) training step' in printed


def test_overhead_of_multi_teacher_kd_has_a_b_leg_per_teacher_that_runs(
        tmp_path, fashion_mnist_root, tiny_teacher, capsys):
    teacher = dict(tiny_teacher['model'], checkpoint=tiny_teacher['checkpoint'])
    logits = dict(logits=dict(type='ModuleOutputs', source='head.fc'))
    model = dict(
        type='MultiTeacherDistiller',
        student=tiny_classifier(depth=8, widths=STUDENT_WIDTHS),
        teachers=dict(r14=teacher, twin=teacher, idle=teacher),
        student_recorders=logits,
        teacher_recorders=dict(r14=logits, twin=logits),  # idle has no records: never runs
        losses=dict(loss_kd=dict(type='MultiTeacherKDLoss', student='student.logits',
                                 teacher=['r14.logits', 'twin.logits'], tau=4)),
        dry_run_shape=(1, 28, 28))
    cfg = runner_cfg(str(tmp_path), fashion_mnist_root, model)
    figures = load_tool('benchmark', 'distill_overhead.py').main(
        [write_config(tmp_path, cfg), '--batch-size', '8', '--warmup', '0', '--iters', '2',
         '--no-memory'])
    printed = capsys.readouterr().out

    legs = [(leg['name'], leg['label'], leg['role']) for leg in figures['legs']]
    assert legs == [('student', '(a) student train step', 'limit'),
                    ('teacher:r14', '(b) r14 inference', 'limit'),
                    ('teacher:twin', '(b) twin inference', 'limit'),
                    ('distill', '(c) distillation step', 'step'),
                    # the student and each teacher as built; no hand-written step (not
                    # Hinton's KD alone)
                    ('plain:student', '(r) student train step, as built', 'reference'),
                    ('plain:teacher:r14', '(r) r14 inference, plain', 'reference'),
                    ('plain:teacher:twin', '(r) twin inference, plain', 'reference')]
    assert 'idle' not in printed
    assert 'ratio c / (a + b[r14] + b[twin]) = ' in printed
    one = sum(p.numel() for p in MODELS.build(tiny_teacher['model']).parameters())
    assert figures['parameters']['teachers'] == 2 * one  # the teachers that run


def test_the_hand_written_kd_step_is_the_distillers_step(tmp_path, fashion_mnist_root,
                                                        tiny_teacher):
    cfg = Config(runner_cfg(str(tmp_path), fashion_mnist_root, kd_model(tiny_teacher)))
    with DefaultScope.overwrite_default_scope('mmkd'):
        batch = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))
        model = MODELS.build(cfg.model)
        ctx = BenchContext(cfg.optim_wrapper.to_dict())
        assert kd_reference(model, ctx, batch) == KDReference('teacher', 4.0, 0.9, 1.0)
        reference = next(leg for leg in legs_for(model, ctx, batch) if leg.name == 'reference')
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper.to_dict())
        model.train()
        for _ in range(2):  # the same weights before each step, so the same loss
            total = model.train_step(copy.deepcopy(batch), optim_wrapper)['loss']
            assert reference.run(copy.deepcopy(batch)).item() == pytest.approx(
                total.item(), rel=1e-5)
        # Another loss, or settings a plain optimizer step does not have: no such leg.
        kd = dict(type='KDLoss', student='logits', teacher='logits', tau=4)
        two = MODELS.build(kd_model(tiny_teacher, losses=dict(loss_kd=kd, loss_kd2=kd)))
        assert kd_reference(two, ctx, batch) is None
        assert kd_reference(model, BenchContext(dict(cfg.optim_wrapper.to_dict(),
                                                     clip_grad=dict(max_norm=1))), batch) is None


def test_a_cohort_is_timed_member_by_member_with_their_own_optimizers():
    model = MODELS.build(dict(type='MutualLearner', members=dict(a=tiny_classifier(),
                                                                 b=tiny_classifier())))
    optim_wrapper = dict(constructor='CohortOptimWrapperConstructor',
                         optimizer=dict(type='SGD', lr=0.1, momentum=0.9),
                         members=dict(b=dict(optimizer=dict(lr=0.05))))
    with DefaultScope.overwrite_default_scope('mmkd'):  # as in the tool
        legs = legs_for(model, BenchContext(optim_wrapper))
    assert [(leg.name, leg.label, leg.role) for leg in legs] == [
        ('member:a', '(a) a train step', 'limit'), ('member:b', '(a) b train step', 'limit'),
        ('distill', '(c) cohort step', 'step')]
    assert member_optim_wrapper(optim_wrapper, 'b') == dict(
        optimizer=dict(type='SGD', lr=0.05, momentum=0.9))
    one = sum(p.numel() for p in model.members['a'].parameters())
    assert count_parameters(model) == dict(members=2 * one, connectors=0, extra_trainable=0)


def test_legs_take_turns_on_the_same_batches():
    calls = []

    def leg(name: str) -> Leg:
        return Leg(name, name, 'limit', lambda batch: calls.append((name, batch['i'])))

    batches = [dict(i=i) for i in range(2)]
    results = time_legs([leg('a'), leg('b'), leg('c')], batches, warmup=1, iters=3)
    # Round i runs the legs rotated by i, on batch i mod 2.
    assert calls == [('a', 0), ('b', 0), ('c', 0), ('b', 1), ('c', 1), ('a', 1),
                     ('c', 0), ('a', 0), ('b', 0), ('a', 1), ('b', 1), ('c', 1)]
    assert [len(r.times) for r in results] == [3, 3, 3]  # warm-up round not timed


# ------------------------------------------------------------------ AMP on CPU
def test_amp_config_on_cpu_and_on_gpu():
    base = dict(optimizer=dict(type='SGD', lr=0.1))
    cpu = mixed_precision_cfg(base, 'cpu')
    assert cpu['type'] == 'mmkd.MixedPrecisionOptimWrapper' and cpu['dtype'] == 'bfloat16'
    assert 'type' not in base  # input left alone
    gpu = mixed_precision_cfg(base, 'cuda')  # unchanged MMEngine behaviour on GPUs
    assert gpu['type'] == 'AmpOptimWrapper' and gpu['loss_scale'] == 'dynamic'
    # A config that already asks for GPU AMP still trains on CPU, in bf16.
    amp = dict(base, type='AmpOptimWrapper', loss_scale=512.0)
    assert mixed_precision_cfg(amp, 'cpu')['type'] == 'mmkd.MixedPrecisionOptimWrapper'
    with pytest.raises(ValueError, match='bfloat16'):
        mixed_precision_cfg(dict(amp, dtype='float16'), 'cpu')
    with pytest.raises(ValueError, match='bfloat16'):
        MixedPrecisionOptimWrapper(optimizer=torch.optim.SGD([torch.nn.Parameter(
            torch.zeros(1))], lr=0.1), dtype='float16', device_type='cpu')


class TrainIterFlag(Hook):
    """Says whether a training iteration is running (not validation, not
    the teacher's evaluation before training)."""

    active = False

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.active = True

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.active = False


def amp_train(tmp_path, fashion_mnist_root, model: dict, watched: dict):
    """Train ``model`` one short epoch with ``train.py --amp``'s optim wrapper;
    return the runner and the dtypes seen at the ``watched`` modules in training."""
    cfg = runner_cfg(str(tmp_path), fashion_mnist_root, model, epochs=1, train_samples=96,
                     val_samples=32)
    args = argparse.Namespace(launcher='none', cfg_options=None, work_dir=None, amp=True,
                              resume=None, auto_scale_lr=False, no_validate=False)
    cfg = load_tool('train.py').merge_args(Config(cfg), args)
    runner = Runner.from_cfg(cfg)
    in_step = TrainIterFlag()
    runner.register_hook(in_step)
    seen = {name: set() for name in watched}
    for name, path in watched.items():
        net, _, module = path.partition(':')
        target = dict(getattr(runner.model, net).named_modules())[module]

        def hook(mod, _args, out, name=name):
            if in_step.active:
                outs = out if isinstance(out, (list, tuple)) else [out]
                seen[name].update(o.dtype for o in outs if isinstance(o, torch.Tensor))

        target.register_forward_hook(hook)
    before = {k: v.clone() for k, v in runner.model.student.state_dict().items()}
    runner.train()
    assert isinstance(runner.optim_wrapper, MixedPrecisionOptimWrapper)
    assert runner.optim_wrapper.cast_dtype == torch.bfloat16
    after = runner.model.student.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(p.dtype == torch.float32 for p in runner.model.parameters())
    return runner, seen


def logged_losses(runner) -> dict:
    return {k: v for k, v in runner.message_hub.log_scalars.items() if 'loss' in k}


def test_amp_kd_trains_on_cpu_in_bf16(tmp_path, fashion_mnist_root, tiny_teacher):
    runner, seen = amp_train(tmp_path, fashion_mnist_root, kd_model(tiny_teacher),
                             dict(student='student:backbone.stem.0',
                                  teacher='teacher:backbone.stem.0',
                                  loss='distill_losses:loss_kd'))
    assert seen['student'] == {torch.bfloat16} and seen['teacher'] == {torch.bfloat16}
    assert seen['loss'] == {torch.float32}
    losses = logged_losses(runner)
    assert {'train/loss', 'train/loss_kd'} <= set(losses)
    for name, buffer in losses.items():
        assert torch.isfinite(torch.tensor(buffer.current())), name
    assert losses['train/loss_kd'].current() > 0
    # The checkpoint of a CPU AMP run resumes (no GradScaler state to restore).
    ckpt = torch.load(osp.join(str(tmp_path), 'epoch_1.pth'), weights_only=False)
    assert 'loss_scaler' not in ckpt['optimizer']
    fresh = MixedPrecisionOptimWrapper(optimizer=torch.optim.SGD(
        runner.model.student.parameters(), lr=0.1), device_type='cpu')
    fresh.load_state_dict(dict(ckpt['optimizer'], loss_scaler={'scale': 512.0}))
    assert isinstance(fresh, OptimWrapper)


def test_amp_ofd_trains_on_cpu_with_connectors(tmp_path, fashion_mnist_root, tiny_teacher):
    model = kd_model(
        tiny_teacher,
        recorders=dict(feats=dict(type='StageFeatures', pre_relu=True)),
        connectors=dict(
            feats_s=dict(type='ConnectorList', connector=dict(type='ConvBNConnector'),
                         input='student.feats', like='teacher.feats'),
            feats_t=dict(type='MarginReLU', input='teacher.feats')),
        losses=dict(loss_ofd=dict(type='OFDLoss', student='feats_s', teacher='feats_t',
                                  normalizer=1000)))
    runner, seen = amp_train(tmp_path, fashion_mnist_root, model,
                             dict(connector='connectors:feats_s', margin='connectors:feats_t',
                                  student='student:backbone.stem.0',
                                  loss='distill_losses:loss_ofd'))
    assert seen['student'] == {torch.bfloat16}
    assert seen['connector'] and seen['margin']  # the connectors ran under autocast
    assert seen['loss'] == {torch.float32}  # summed in fp32, not bf16
    loss = logged_losses(runner)['train/loss_ofd'].current()
    assert torch.isfinite(torch.tensor(loss)) and loss > 0
    connectors = runner.model.connectors
    assert all(torch.isfinite(p).all() for p in connectors.parameters())
