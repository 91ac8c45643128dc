"""Knowledge quantification of Cheng et al. (CVPR 2020): the metrics and the hook."""
import glob
import importlib.util
import json
import math
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from torch import nn

from mmkd.analysis import (
    ProbeSettings,
    WeightPath,
    accumulated_distances,
    build_probe_set,
    cell_foreground,
    concept_stability,
    count_concepts,
    distance_at_peak,
    flat_weights,
    foreground_ratio,
    gaussian_entropy,
    layer_feature_fn,
    measure_entropy,
    nanmean,
    optimise_sigma,
    perturbation_loss,
    summarize_knowledge,
    threshold_foreground,
)
from mmkd.engine.hooks import KnowledgeQuantificationHook
from mmkd.recorders import RecorderPathError, RecordNotFoundError
from mmkd.registry import MODELS

from conftest import REPO, STUDENT_WIDTHS, TEACHER_WIDTHS, kd_model, runner_cfg, tiny_classifier


def test_entropy_is_that_of_a_gaussian():
    sigma = torch.tensor([0.01, 0.5, 1.0, 3.0])
    expected = torch.distributions.Normal(torch.zeros(4), sigma).entropy()
    assert torch.allclose(gaussian_entropy(sigma), expected, atol=1e-6)
    # Doubling the noise adds log 2 nats.
    assert torch.allclose(gaussian_entropy(2 * sigma) - gaussian_entropy(sigma),
                          torch.full((4, ), math.log(2.0)))


def test_concept_rule_on_a_constructed_map():
    foreground = torch.zeros(2, 4, 4, dtype=torch.bool)
    foreground[:, 1:3, 1:3] = True
    entropy = torch.ones(2, 4, 4)
    entropy[0, 0, 0] = entropy[0, 3, 3] = 0.4          # background cells the layer uses
    entropy[0, 1:3, 1:3] = torch.tensor([[0.5, 0.65], [0.75, 1.2]])
    # H_bg = (10 * 1.0 + 2 * 0.4) / 12 = 0.9: concepts are the cells below 0.7.
    entropy[1] = 0.0
    foreground[1] = True                                # no background: no reference level
    found = count_concepts(entropy, foreground, threshold=0.2)
    assert found.background_entropy[0].item() == pytest.approx(0.9)
    assert math.isnan(found.background_entropy[1].item())
    assert found.n_fg.tolist() == [2, 0] and found.n_bg.tolist() == [2, 0]
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0, 0] = expected[3, 3] = expected[1, 1] = expected[1, 2] = True
    assert torch.equal(found.concepts[0], expected)
    assert foreground_ratio(found.n_fg.tolist(), found.n_bg.tolist()) == pytest.approx(0.5)
    # A larger b keeps only the strongest ones.
    strict = count_concepts(entropy, foreground, threshold=0.45)
    assert strict.n_fg.tolist() == [0, 0] and strict.n_bg.tolist() == [2, 0]


def test_foreground_cells_from_a_black_background():
    images = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    images[0, 0, :4, :4] = 200
    images[0, 0, 4, 4] = 200                          # 1 pixel of 16: not enough for a cell
    images[0, 0, 6:, 6:] = 5                          # under the threshold
    cells = cell_foreground(threshold_foreground(images, 10), 2)
    assert cells.int().tolist() == [[[1, 0], [0, 0]]]


def test_weight_distance_and_stability_on_known_sequences():
    # A straight path and a detour to the same end point.
    straight = [torch.tensor([3.0, 4.0]), torch.tensor([6.0, 8.0])]
    detour = [torch.tensor([3.0, 4.0]), torch.tensor([9.0, 12.0]), torch.tensor([6.0, 8.0])]
    assert accumulated_distances(straight) == pytest.approx([0.0, 1.0])
    assert accumulated_distances(detour) == pytest.approx([0.0, 2.0, 3.0])
    path = WeightPath(detour[0])
    assert [path.step(w) for w in detour[1:]] == pytest.approx([2.0, 3.0])
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    assert flat_weights(model, '1').numel() == 3 and flat_weights(model).numel() == 9
    with pytest.raises(ValueError, match='no parameters under'):
        flat_weights(model, 'backbone')

    # Image 0 peaks at epoch 1 (D = 1), image 1 at epoch 3 (D = 3): learned one after the other.
    d_mean, d_std, peaks = distance_at_peak([1.0, 2.0, 3.0], [[4, 0], [2, 1], [4, 6]])
    assert peaks == [0, 2] and d_mean == pytest.approx(2.0) and d_std == pytest.approx(1.0)

    a, b, c = (torch.tensor([[i == k for k in range(3)]]) for i in range(3))
    # S_1 = {a, b}, S_2 = {b}, S_3 = {b, c}: |S_3| / |{a, b, c}| = 2 / 3.
    rho = concept_stability([a | b, b, b | c])
    assert rho.tolist() == pytest.approx([2 / 3])
    never = torch.zeros(1, 3, dtype=torch.bool)
    assert math.isnan(concept_stability([never, never]).item())
    assert nanmean(torch.tensor([0.5, math.nan, 1.0])) == pytest.approx(0.75)


class LeftHalfNet(nn.Module):
    """A fixed feature that reads the left half of the image only."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))[..., :x.shape[-1] // 2]


def test_sigma_optimisation_lowers_its_loss_within_the_clamp():
    net = LeftHalfNet().eval()
    inputs = torch.randn(3, 1, 16, 16)
    sigma_range = (0.02, 1.0)
    result = optimise_sigma(net, inputs, grid=4, steps=30, lr=0.2, reference_sigma=0.1,
                            sigma_range=sigma_range, seed=0)
    assert result.sigma.shape == (3, 4, 4)
    assert (result.sigma >= sigma_range[0] - 1e-6).all()
    assert (result.sigma <= sigma_range[1] + 1e-6).all()
    assert all(p.grad is None for p in net.parameters())

    # The expected loss, on the same noise draws, before and after.
    with torch.no_grad():
        clean = net(inputs)
        draws = torch.randn(32, *inputs.shape, generator=torch.Generator().manual_seed(1))

        def expected_loss(sigma):
            return torch.stack([perturbation_loss(net, inputs, clean, result.reference, sigma,
                                                  eps, 2.0) for eps in draws]).mean().item()

        before = expected_loss(torch.full_like(result.sigma, 0.1))
        after = expected_loss(result.sigma)
    assert after < before - 0.5

    # Noise on the last column of cells, out of the conv's reach, costs nothing: it grows to
    # the clamp. The third column is read by the border of the 3x3 conv.
    ignored, used = result.sigma[..., 3], result.sigma[..., :3]
    assert torch.allclose(ignored, torch.full_like(ignored, sigma_range[1]))
    assert (used < 0.5).all()
    # With the ignored column as background, the used cells are all concepts.
    foreground = torch.zeros(3, 4, 4, dtype=torch.bool)
    foreground[..., :3] = True
    summary = summarize_knowledge([result.entropy], foreground, threshold=0.2)
    assert summary['N_fg'] == 12 and summary['N_bg'] == 0 and summary['lambda'] == 1.0
    assert summary['H_fg-H_bg'] < -0.2


def test_layer_feature_stops_after_the_layer():
    from mmpretrain.registry import MODELS
    classifier = MODELS.build(tiny_classifier()).eval()
    calls = []
    classifier.head.register_forward_hook(lambda *_: calls.append(1))
    feature = layer_feature_fn(classifier, 'backbone.layer2')(torch.randn(2, 1, 28, 28))
    assert feature.shape == (2, 8, 14, 14) and not calls
    with pytest.raises(RecorderPathError, match='backbone.layer3'):
        layer_feature_fn(classifier, 'backbone.layer33')
    # The loss module exists but does not run in a tensor forward.
    unused = layer_feature_fn(classifier, 'head.loss_module', 'student')
    with pytest.raises(RecordNotFoundError, match="student: module 'head.loss_module' did not run"):
        unused(torch.randn(2, 1, 28, 28))


def test_hook_and_tools_share_the_probe_settings():
    hook = KnowledgeQuantificationHook(sigma_range=[0.01, 3.0])  # a config gives a list
    assert hook.settings == ProbeSettings()
    assert ProbeSettings(grid=[7, 7]).sigma_kwargs['grid'] == (7, 7)
    with pytest.raises(ValueError, match='must be >= 1'):
        KnowledgeQuantificationHook(interval=0)


def tiny_cohort() -> dict:
    """A MutualLearner of two tiny members, a and b."""
    return dict(type='MutualLearner', members=dict(a=tiny_classifier(), b=tiny_classifier()),
                data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor', num_classes=10,
                                       mean=[72.94], std=[90.02], to_rgb=False))


def test_hook_refuses_a_cohort_by_name():
    cohort = MODELS.build(tiny_cohort())
    with pytest.raises(ValueError, match=r"cohort of members \['a', 'b'\].*quantify_checkpoints"):
        KnowledgeQuantificationHook.student_of(cohort)
    plain = MODELS.build(tiny_classifier())
    assert KnowledgeQuantificationHook.student_of(plain).module is plain


def hook_cfg(work_dir, root, model, with_hook=True, epochs=2, train_samples=128,
             val_samples=64, num_images=6) -> Config:
    cfg = runner_cfg(str(work_dir), root, model, epochs=epochs, train_samples=train_samples,
                     val_samples=val_samples)
    cfg['custom_hooks'] = [dict(type='TeacherEvaluationHook', before_train=False)]
    if with_hook:
        cfg['custom_hooks'].append(dict(type='KnowledgeQuantificationHook',
                                        num_images=num_images, steps=4,
                                        layer='backbone.layer3'))
    return Config(cfg)


def tiny_kd_model() -> dict:
    # The hook does not need a trained teacher: an untrained one keeps the tests short.
    return kd_model(dict(model=tiny_classifier(depth=14, widths=TEACHER_WIDTHS), checkpoint=None))


@pytest.fixture(scope='module')
def hooked_kd_run(tmp_path_factory, fashion_mnist_root):
    """A tiny KD run of 2 epochs with the hook: its work dir and final state."""
    work_dir = tmp_path_factory.mktemp('kq') / 'kd_seed0'
    with pytest.warns(UserWarning, match='teacher checkpoint=None'):
        runner = Runner.from_cfg(hook_cfg(work_dir, fashion_mnist_root, tiny_kd_model()))
    runner.train()
    return dict(work_dir=work_dir, state=runner.model.student.state_dict())


def test_hook_writes_its_json_and_scalars(hooked_kd_run):
    work_dir = str(hooked_kd_run['work_dir'])
    with open(osp.join(work_dir, 'knowledge_quantification.json')) as f:
        record = json.load(f)
    assert len(record['probe_indices']) == 6 and len(record['images']) == 6
    assert torch.tensor(record['foreground']).shape == (6, 7, 7)
    student = record['student']
    assert [e['epoch'] for e in student['epochs']] == [1, 2]
    distances = student['weight_distance']
    assert len(distances) == 3 and distances[0] == 0 and 0 < distances[1] < distances[2]
    entropy = torch.tensor(student['epochs'][-1]['entropy'])
    assert entropy.shape == (6, 7, 7)
    low, high = gaussian_entropy(torch.tensor([0.01, 3.0])).tolist()
    assert (entropy >= low - 1e-3).all() and (entropy <= high + 1e-3).all()
    assert set(student['summary']) >= {'N_fg', 'N_bg', 'lambda', 'D_mean', 'D_std', 'rho'}
    # The summary is the one the tool recomputes from the stored maps.
    again = summarize_knowledge([torch.tensor(e['entropy']) for e in student['epochs']],
                                torch.tensor(record['foreground']).bool(), distances[1:])
    for key, value in again.items():
        stored = student['summary'][key]
        assert (stored is None and math.isnan(value)) or stored == pytest.approx(value, abs=1e-3)
    assert torch.tensor(record['teacher']['entropy']).shape == (6, 7, 7)
    assert record['teachers'] == {'teacher': record['teacher']}
    assert record['timing']['hook_seconds'] > 0 and record['timing']['train_seconds'] > 0

    scalars = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            scalars += [json.loads(line) for line in f]
    assert [s['step'] for s in scalars if 'knowledge/weight_distance' in s] == [1, 2]
    assert any('knowledge/teacher/N_fg' in s for s in scalars)


def load_tool(name: str):
    """A script of tools/analysis as a module."""
    spec = importlib.util.spec_from_file_location(
        name, osp.join(REPO, 'tools', 'analysis', f'{name}.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_tool_tabulates_and_plots_the_runs(hooked_kd_run, monkeypatch, capsys):
    tool = load_tool('quantify_knowledge')
    work_dir = hooked_kd_run['work_dir']
    plots = work_dir.parent / 'plots'
    monkeypatch.setattr(sys, 'argv', ['quantify_knowledge.py', f'KD={work_dir.parent}/kd_seed*',
                                      '--out-dir', str(plots)])
    tool.main()
    table = capsys.readouterr().out
    with open(work_dir / 'knowledge_quantification.json') as f:
        summary = json.load(f)['student']['summary']
    row = next(line for line in table.splitlines() if line.startswith('| KD | 1 |'))
    assert f'| {summary["N_fg"]:.2f} |' in row and f'| {summary["rho"]:.3f} |' in row
    assert any(line.startswith('| teacher |') for line in table.splitlines())
    for name in ('entropy_maps.png', 'concept_counts.png'):
        with open(plots / name, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n', name


def test_hook_leaves_training_unchanged(hooked_kd_run, tmp_path, fashion_mnist_root):
    with pytest.warns(UserWarning, match='teacher checkpoint=None'):
        runner = Runner.from_cfg(hook_cfg(tmp_path, fashion_mnist_root, tiny_kd_model(),
                                          with_hook=False))
    runner.train()
    assert not osp.exists(tmp_path / 'knowledge_quantification.json')
    for key, value in runner.model.student.state_dict().items():
        assert torch.equal(value, hooked_kd_run['state'][key]), key


# ---------------------------------------------------------------- several teachers
def tiny_mt_model() -> dict:
    """Tiny student, two untrained teachers of different widths, KD from both."""
    return dict(
        type='MultiTeacherDistiller',
        student=tiny_classifier(depth=8, widths=STUDENT_WIDTHS),
        teachers=dict(t1=dict(tiny_classifier(depth=14, widths=TEACHER_WIDTHS), checkpoint=None),
                      t2=dict(tiny_classifier(depth=8, widths=(8, 8, 12, 12)),
                              checkpoint=None)),
        recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
        losses=dict(loss_kd=dict(type='MultiTeacherKDLoss', student='student.logits',
                                 teacher=['t1.logits', 't2.logits'], tau=4)),
        dry_run_shape=(1, 28, 28))


@pytest.fixture(scope='module')
def hooked_mt_run(tmp_path_factory, fashion_mnist_root):
    """A tiny two-teacher run of 1 epoch with the hook: its work dir and runner."""
    work_dir = tmp_path_factory.mktemp('kq_mt') / 'mt_seed0'
    with pytest.warns(UserWarning, match='randomly initialised'):
        runner = Runner.from_cfg(hook_cfg(work_dir, fashion_mnist_root, tiny_mt_model(),
                                          epochs=1, train_samples=64, val_samples=32,
                                          num_images=4))
    runner.train()
    return dict(work_dir=work_dir, runner=runner)


def test_hook_measures_each_of_several_teachers(hooked_mt_run):
    work_dir = str(hooked_mt_run['work_dir'])
    with open(osp.join(work_dir, 'knowledge_quantification.json')) as f:
        record = json.load(f)
    assert record['teacher'] is None  # no single teacher: readers of 'teacher' see none
    teachers = record['teachers']
    assert list(teachers) == ['teacher/t1', 'teacher/t2']
    for measured in teachers.values():
        assert torch.tensor(measured['entropy']).shape == (4, 7, 7)
        assert set(measured['summary']) >= {'N_fg', 'N_bg', 'lambda'}
        assert measured['seconds'] > 0
    assert [e['epoch'] for e in record['student']['epochs']] == [1]

    # Each map is its own teacher's, on the probe images: measured again here, it matches.
    runner = hooked_mt_run['runner']
    settings = ProbeSettings(num_images=4, steps=4)
    inputs, _, indices, _ = build_probe_set(runner.val_loop.dataloader.dataset,
                                            runner.model.data_preprocessor, settings.num_images,
                                            settings.probe_seed, settings.grid,
                                            settings.foreground_threshold)
    assert indices == record['probe_indices']
    for name, net in runner.model.teachers.items():
        entropy = measure_entropy(net, 'backbone.layer3', inputs, name, **settings.sigma_kwargs)
        stored = torch.tensor(teachers[f'teacher/{name}']['entropy'])
        assert torch.allclose(stored, entropy, atol=1e-4), name
    t1, t2 = (torch.tensor(teachers[f'teacher/{n}']['entropy']) for n in ('t1', 't2'))
    assert not torch.allclose(t1, t2)

    scalars = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            scalars += [json.loads(line) for line in f]
    for name in ('t1', 't2'):
        logged = [s for s in scalars if f'knowledge/teacher/{name}/N_fg' in s]
        assert len(logged) == 1 and logged[0]['step'] == 0, name
        assert logged[0][f'knowledge/teacher/{name}/N_fg'] == pytest.approx(
            teachers[f'teacher/{name}']['summary']['N_fg'])
    assert not any('knowledge/teacher/N_fg' in s for s in scalars)
    assert [s['step'] for s in scalars if 'knowledge/weight_distance' in s] == [1]


def test_tools_show_each_teacher(hooked_mt_run, monkeypatch, capsys):
    work_dir = hooked_mt_run['work_dir']
    tool = load_tool('quantify_knowledge')
    monkeypatch.setattr(sys, 'argv', ['quantify_knowledge.py', f'MT={work_dir}'])
    tool.main()
    rows = capsys.readouterr().out.splitlines()
    with open(work_dir / 'knowledge_quantification.json') as f:
        teachers = json.load(f)['teachers']
    for prefix in ('teacher/t1', 'teacher/t2'):
        row = next(line for line in rows if line.startswith(f'| {prefix} |'))
        assert f'| {teachers[prefix]["summary"]["N_fg"]:.2f} |' in row
    assert any(line.startswith('| MT | 1 |') for line in rows)

    # The checkpoint tool measures the student and each teacher of the run's last checkpoint.
    tool = load_tool('quantify_checkpoints')
    monkeypatch.setattr(sys, 'argv', ['quantify_checkpoints.py', str(work_dir / 'epoch_1.pth')])
    with pytest.warns(UserWarning, match='randomly initialised'):
        tool.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith('| ')]
    names = [line.split(' | ')[0][2:] for line in rows[1:]]
    assert names == ['teacher/t1', 'teacher/t2', 'mt']


def test_checkpoint_tool_measures_each_cohort_member(tmp_path, fashion_mnist_root, monkeypatch,
                                                     capsys):
    # What the hook's refusal of a cohort points to: the tool, on a cohort's checkpoint.
    work_dir = tmp_path / 'dml_seed0'
    work_dir.mkdir()
    Config(runner_cfg(str(work_dir), fashion_mnist_root, tiny_cohort(), val_samples=32)).dump(
        str(work_dir / 'run.py'))
    cohort = MODELS.build(tiny_cohort())
    cohort.init_weights()
    torch.save(dict(state_dict=cohort.state_dict(), meta=dict()), str(work_dir / 'epoch_1.pth'))
    monkeypatch.setattr(sys, 'argv', ['quantify_checkpoints.py', str(work_dir / 'epoch_1.pth')])
    load_tool('quantify_checkpoints').main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith('| ')]
    assert [line.split(' | ')[0][2:] for line in rows[1:]] == ['dml/a', 'dml/b']
    a, b = (line.split(' | ')[2:] for line in rows[1:])
    assert a != b  # two members, two measurements
