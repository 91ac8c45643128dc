"""FLOPs of the overhead benchmark's legs (mmkd.benchmark.flops, tools/benchmark/flops.py)."""
import copy
import importlib.util
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from torch import nn

from mmkd.benchmark.flops import (
    BACKWARD_FACTOR,
    MARK_END,
    MARK_START,
    count_flops,
    count_legs,
    measured_ratios,
)

from conftest import REPO, tiny_classifier

pytestmark = pytest.mark.usefixtures('one_thread')

PREPROCESSOR = dict(type='mmpretrain.ClsDataPreprocessor', num_classes=10, mean=[72.94],
                    std=[90.02], to_rgb=False)
SHAPE = (1, 28, 28)


def classifier(**kwargs) -> dict:
    return dict(tiny_classifier(**kwargs), data_preprocessor=copy.deepcopy(PREPROCESSOR))


def config(model: dict, **extra) -> Config:
    return Config(dict(model=model, data_preprocessor=copy.deepcopy(PREPROCESSOR),
                       optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
                       **extra))


# ---------------------------------------------------------------------- by hand
def test_conv_and_linear_count_their_multiply_adds():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    model = nn.Sequential(conv, nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    x = torch.randn(2, 1, 4, 4)
    # conv: N * C_out * H * W * (C_in * 3 * 3) = 2 * 2 * 16 * 9; linear: N * 32 * 3
    assert count_flops(conv, x) == 576
    assert count_flops(model, x) == 576 + 192


def test_kd_costs_its_limit_exactly_and_a_missing_checkpoint_builds_untrained():
    model = dict(type='SingleTeacherDistiller', student=classifier(),
                 teacher=dict(classifier(depth=14, widths=(8, 8, 16, 16)),
                              checkpoint='no/such/epoch_1.pth'),
                 recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
                 losses=dict(loss_kd=dict(type='KDLoss', student='logits', teacher='logits')),
                 dry_run_shape=SHAPE)
    legs = count_legs(config(model), batch_size=4, shape=SHAPE, name='kd')
    assert legs.untrained == ['teacher']
    assert legs.own == {} and legs.repeated == {} and legs.outside == 0
    # The teacher runs to its logits in the step, as in its inference leg, without grad.
    assert legs.no_grad == legs.b > 0
    assert legs.a == BACKWARD_FACTOR * legs.trained['student']
    assert legs.c == legs.a + legs.b and legs.ratio == 1
    assert set(legs.census) == {'a', 'b', 'c', 'extra_ops_by_op', 'extra_bytes_by_op'}


def test_self_distiller_adds_its_auxiliary_classifiers_with_their_backward():
    model = dict(type='SelfDistiller', student=classifier(),
                 aux_sources=dict(layer1='backbone.layer1', layer2='backbone.layer2'),
                 dry_run_shape=SHAPE)
    legs = count_legs(config(model), batch_size=4, shape=SHAPE, name='byot', census=False)
    assert legs.b == 0 and legs.no_grad == 0 and not legs.census
    assert {'aux_heads.layer1', 'aux_heads.layer2', 'hint_adapters.layer1'} == set(legs.own)
    assert legs.c == BACKWARD_FACTOR * (legs.trained['student'] + sum(legs.own.values()))
    assert legs.ratio > 1


@pytest.mark.parametrize('order', ['sequential', 'synchronous'])
def test_dml_sequential_recomputes_one_member_without_grad(order):
    model = dict(type='MutualLearner', members=dict(m1=classifier(), m2=classifier()),
                 loss=dict(type='DMLLoss'), order=order)
    cfg = config(model)
    cfg.optim_wrapper.constructor = 'CohortOptimWrapperConstructor'
    legs = count_legs(cfg, batch_size=4, shape=SHAPE, name='dml', census=False)
    forward = legs.trained['m1']
    assert legs.trained == {'m1': forward, 'm2': forward} and legs.a == 6 * forward
    # Each member's classifier layer (8 -> 10) runs twice in a step (logits, then head.loss).
    fc = 4 * 8 * 10
    if order == 'sequential':  # member 1 again after its update, no grad: once, no backward
        assert legs.repeated == {'m1': forward + fc, 'm2': fc}
        assert legs.no_grad == forward
        assert legs.c == 7 * forward + 6 * fc
        assert legs.ratio == pytest.approx(7 / 6, abs=1e-3)
    else:
        assert legs.repeated == {'m1': fc, 'm2': fc} and legs.no_grad == 0
        assert legs.ratio == pytest.approx(1, abs=1e-3)


# ---------------------------------------------------------------------- the tool
def load_tool():
    path = osp.join(REPO, 'tools', 'benchmark', 'flops.py')
    spec = importlib.util.spec_from_file_location('flops_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_prints_a_row_per_config_and_writes_between_the_markers(tmp_path, capsys):
    page = tmp_path / 'page.md'
    page.write_text(f'# Page\n\nbefore\n\n{MARK_START}\nold table\n{MARK_END}\n\nafter\n')
    byot = 'configs/self_distillation/byot_resnet8_fashionmnist.py'
    counted = load_tool().main(
        ['--configs', byot, 'configs/dml/dml_resnet8x2_fashionmnist.py@model.order=synchronous',
         '--batch-size', '2', '--out', str(page), '--json', str(tmp_path / 'flops.json')])
    printed = capsys.readouterr().out
    measured = measured_ratios(REPO).get(byot)
    rows = [line for line in printed.splitlines() if line.startswith('| byot_resnet8')]
    assert len(rows) == 2  # the FLOP table and the census
    cells = [c.strip() for c in rows[0].strip('|').split('|')]
    assert float(cells[6]) == pytest.approx(counted[0]['ratio'], abs=0.005)
    assert cells[7] == ('-' if measured is None else f'{measured:.2f}')
    assert '| dml_resnet8x2_fashionmnist.py model.order=synchronous |' in printed
    written = page.read_text()
    assert written.startswith('# Page\n\nbefore\n\n' + MARK_START)
    assert 'old table' not in written and written.endswith(f'{MARK_END}\n\nafter\n')
    assert rows[0] in written
    assert json.loads((tmp_path / 'flops.json').read_text())[1]['ratio'] == pytest.approx(1,
                                                                                          abs=1e-3)
