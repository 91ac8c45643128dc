"""CRD: the NCE loss against the paper's formula, the memory's updates and negatives, its
survival through a resume, its agreement across two DDP processes, the dry run, the configs."""
import os.path as osp
import textwrap

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

from mmkd.distillers import DistillerConfigError, load_config
from mmkd.losses import ContrastMemory, CRDLoss
from mmkd.registry import DATASETS, HOOKS, MODELS

from conftest import (
    REPO,
    STUDENT_WIDTHS,
    TEACHER_WIDTHS,
    dist_train,
    run_failure,
    runner_cfg,
    tiny_classifier,
)

pytestmark = pytest.mark.filterwarnings('ignore:.*randomly initialised:UserWarning')

TAU = 0.07


def samples(indices, labels):
    return [DataSample(metainfo=dict(sample_idx=int(i))).set_gt_label(int(y))
            for i, y in zip(indices, labels)]


def reference_half(anchor, bank, rows, n, z=None):
    """One half of CRD (anchors against the other net's memory) in float64, written from
    the paper: P = exp(<m_j, v>/tau) / Z, h = P / (P + K/N); -E[log h(pos)] - E[K log(1-h)],
    with the authors' eps; Z = N * mean(exp(.)) of this batch unless given."""
    anchor, bank = anchor.double(), bank.double()
    scores = (bank[rows] * anchor[:, None, :]).sum(-1)  # (B, K+1) as row-wise dot products
    e = torch.exp(scores / TAU)
    if z is None:
        z = float(e.detach().mean()) * n
    p = e / z
    k = rows.shape[1] - 1
    eps = 1e-7
    log_h_pos = torch.log(p[:, 0] / (p[:, 0] + k / n + eps))
    log_1_minus_h_neg = torch.log((k / n) / (p[:, 1:] + k / n + eps))
    return -(log_h_pos.sum() + log_1_minus_h_neg.sum()) / anchor.shape[0], z


def unit_rows(n, d, generator):
    return F.normalize(torch.randn(n, d, generator=generator, dtype=torch.float64), dim=1)


# N (2B + D) < B (K + 1) D: all scores as one product (N=20); otherwise gathered rows (N=500).
@pytest.mark.parametrize('num_samples', [20, 500])
def test_nce_loss_matches_the_papers_formula_in_float64(num_samples):
    g = torch.Generator().manual_seed(1)
    batch, k, dim = 6, 8, 16
    loss = CRDLoss(num_samples=num_samples, num_negatives=k, feat_dim=dim,
                   negatives='other_classes', loss_weight=0.8).train()
    labels = torch.arange(num_samples) % 4
    loss.memory.set_labels(labels)
    mem_s, mem_t = unit_rows(num_samples, dim, g), unit_rows(num_samples, dim, g)
    loss.memory.student.copy_(mem_s)
    loss.memory.teacher.copy_(mem_t)
    s64, t64 = unit_rows(batch, dim, g), unit_rows(batch, dim, g)
    indices = torch.randperm(num_samples, generator=g)[:batch]
    batch_samples = samples(indices, labels[indices])

    for step in range(2):  # step 0 estimates Z, step 1 uses the stored Z
        negatives = loss.memory.draw_negatives(batch, labels[indices], k, 'other_classes',
                                               False, loss.memory.generator(torch.device('cpu')))
        rows = torch.cat([indices[:, None], negatives], 1)
        bank_s, bank_t = loss.memory.student.clone(), loss.memory.teacher.clone()
        s = s64.float().requires_grad_()
        got = loss(s, t64.float(), batch_samples)
        got.backward()  # the memory was updated in place after the scores
        ref_s = s64.clone().requires_grad_()
        z = (None, None) if step == 0 else (float(loss.z[0]), float(loss.z[1]))
        half_s, z_s = reference_half(ref_s, bank_t, rows, num_samples, z[0])
        half_t, z_t = reference_half(t64, bank_s, rows, num_samples, z[1])
        expected = 0.8 * (half_s + half_t)
        expected.backward()
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)
        assert loss.z.tolist() == pytest.approx([z_s, z_t], rel=1e-5)
        assert torch.allclose(s.grad.double(), ref_s.grad, rtol=1e-4, atol=1e-7)
        # The memory took this batch (rows of the batch only).
        assert not torch.equal(loss.memory.student[indices], bank_s[indices].float())
        others = torch.ones(num_samples, dtype=torch.bool)
        others[indices] = False
        assert torch.equal(loss.memory.student[others], bank_s[others].float())
        assert int(loss.memory.step) == step + 1


def test_loss_is_computed_in_fp32_under_autocast():
    loss = CRDLoss(num_samples=30, num_negatives=8, feat_dim=16, negatives='uniform').eval()
    s, t = (F.normalize(torch.randn(4, 16), dim=1).bfloat16() for _ in range(2))
    expected = loss(s.float(), t.float())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = loss(s, t)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_momentum_update_changes_the_batch_rows_only_and_renormalises():
    g = torch.Generator().manual_seed(2)
    memory = ContrastMemory(num_samples=20, feat_dim=8, momentum=0.5)
    before_s, before_t = memory.student.clone(), memory.teacher.clone()
    indices = torch.tensor([3, 11, 7, 3])  # sample 3 twice: its last occurrence counts
    s, t = unit_rows(4, 8, g).float(), unit_rows(4, 8, g).float()
    memory.update(indices, s, t)
    for bank, before, new in ((memory.student, before_s, s), (memory.teacher, before_t, t)):
        for row, j in ((3, 3), (11, 1), (7, 2)):
            mixed = 0.5 * before[row].double() + 0.5 * new[j].double()
            assert torch.allclose(bank[row].double(), mixed / mixed.norm(), atol=1e-6)
            assert bank[row].norm().item() == pytest.approx(1.0, abs=1e-6)
        untouched = [r for r in range(20) if r not in (3, 7, 11)]
        assert torch.equal(bank[untouched], before[untouched])
    assert int(memory.step) == 1


def test_negatives_come_from_other_classes_and_follow_the_seed():
    memory = ContrastMemory(num_samples=60, feat_dim=4)
    labels = torch.arange(60) % 3  # 40 other-class samples per anchor
    memory.set_labels(labels)
    anchors = torch.tensor([0, 1, 2, 0])
    draw = memory.draw_negatives(4, anchors, 30, 'other_classes', False,
                                 memory.generator(torch.device('cpu')))
    assert draw.shape == (4, 30)
    assert (labels[draw] != anchors[:, None]).all()
    assert all(len(set(row.tolist())) == 30 for row in draw)  # without replacement
    again = memory.draw_negatives(4, anchors, 30, 'other_classes', False,
                                  memory.generator(torch.device('cpu')))
    assert torch.equal(draw, again)  # same (seed, step, rank): same negatives
    memory.step += 1
    later = memory.draw_negatives(4, anchors, 30, 'other_classes', False,
                                  memory.generator(torch.device('cpu')))
    assert not torch.equal(draw, later)
    # More negatives than other-class samples: drawn with replacement, still other classes.
    many = memory.draw_negatives(4, anchors, 2000, 'other_classes', False,
                                 memory.generator(torch.device('cpu')))
    assert (labels[many] != anchors[:, None]).all()
    assert set(many[0].tolist()) == set(torch.nonzero(labels != 0).flatten().tolist())
    uniform = memory.draw_negatives(4, None, 500, 'uniform', False,
                                    memory.generator(torch.device('cpu')))
    assert (labels[uniform] == anchors[:, None]).any()  # uniform: any sample
    assert not torch.equal(uniform[0], uniform[1])


def test_without_the_hook_the_memory_learns_the_labels_from_the_batches():
    loss = CRDLoss(num_samples=10, num_negatives=4, feat_dim=8).train()
    x = F.normalize(torch.randn(2, 8), dim=1)
    with pytest.raises(RuntimeError, match='ContrastMemoryHook'):  # no labels anywhere
        loss(x, x, [DataSample(metainfo=dict(sample_idx=0)),
                    DataSample(metainfo=dict(sample_idx=1))])
    loss(x, x, samples([0, 1], [0, 1]))
    assert loss.memory.labels.tolist() == [0, 1] + [-1] * 8
    # Known rows of the anchor's class are never negatives; unknown rows may be.
    draw = loss.memory.draw_negatives(2, torch.tensor([0, 1]), 9, 'other_classes', False,
                                      loss.memory.generator(torch.device('cpu')))
    assert sorted(draw[0].tolist()) == [1] + list(range(2, 10))
    assert sorted(draw[1].tolist()) == [0] + list(range(2, 10))
    with pytest.raises(ValueError, match='differ from'):  # labels and samples disagree
        loss(x, x, samples([0, 1], [1, 0]))
    with pytest.raises(ValueError, match='num_samples=10 rows'):
        loss(x, x, samples([0, 10], [0, 0]))
    with pytest.raises(ValueError, match='sample_idx'):
        loss(x, x, [DataSample().set_gt_label(0), DataSample().set_gt_label(1)])
    # Outside training nothing is learnt or stored.
    loss.eval()
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    loss(x, x, samples([5, 6], [1, 1]))
    assert loss.memory.labels[5:7].tolist() == [-1, -1]
    assert all(torch.equal(v, loss.state_dict()[k]) for k, v in before.items())


def crd_model(num_samples: int = 64, **loss_args) -> dict:
    loss = dict(type='CRDLoss', student='embed_s', teacher='embed_t',
                num_samples=num_samples, num_negatives=16, feat_dim=16)
    loss.update(loss_args)
    return dict(
        type='SingleTeacherDistiller',
        student=tiny_classifier(depth=8, widths=STUDENT_WIDTHS),
        teacher=dict(tiny_classifier(depth=14, widths=TEACHER_WIDTHS), checkpoint=None),
        recorders=dict(feat=dict(type='ModuleOutputs', source='neck', item=0)),
        connectors=dict(
            embed_s=dict(type='EmbedConnector', input='student.feat', out_channels=16),
            embed_t=dict(type='EmbedConnector', input='teacher.feat', out_channels=16)),
        losses=dict(loss_crd=loss),
        dry_run_shape=(1, 28, 28))


def test_dry_run_without_data_samples_stores_nothing():
    with DefaultScope.overwrite_default_scope('mmkd'):
        distiller = MODELS.build(crd_model())
    loss = distiller.distill_losses['loss_crd']
    assert loss.z.tolist() == [-1.0, -1.0] and int(loss.memory.step) == 0
    # The embedding heads: widths inferred, unit-norm outputs, trained, not exported.
    assert distiller.connectors['embed_s'].fc.in_features == STUDENT_WIDTHS[-1]
    assert distiller.connectors['embed_t'].fc.in_features == TEACHER_WIDTHS[-1]
    out = distiller.connectors['embed_t'](torch.randn(3, TEACHER_WIDTHS[-1]))
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-6)
    assert not any('memory' in k or 'embed' in k for k in distiller.student_state_dict())
    # The memory is in the distiller's state dict (hence in checkpoints).
    state = distiller.state_dict()
    assert {'distill_losses.loss_crd.memory.student', 'distill_losses.loss_crd.memory.teacher',
            'distill_losses.loss_crd.memory.seed', 'distill_losses.loss_crd.memory.step',
            'distill_losses.loss_crd.z'} <= set(state)
    assert 'distill_losses.loss_crd.memory.labels' not in state
    # A wrong embedding size fails at build time and names the connector.
    with pytest.raises(DistillerConfigError, match='EmbedConnector'), \
            DefaultScope.overwrite_default_scope('mmkd'):
        MODELS.build(crd_model(feat_dim=32))


def test_sample_idx_is_the_index_into_the_subset_dataset(fashion_mnist_root):
    dataset = DATASETS.build(dict(
        type='mmpretrain.FashionMNIST', data_root=fashion_mnist_root, split='train',
        indices=64, pipeline=[dict(type='mmpretrain.PackInputs')]))
    assert len(dataset) == 64
    for i in (0, 17, 63):
        assert dataset[i]['data_samples'].sample_idx == i
        assert int(dataset[i]['data_samples'].gt_label) == int(dataset.get_gt_labels()[i])


class Killed(RuntimeError):
    pass


@HOOKS.register_module(force=True)
class CRDKillAtIter(Hook):
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == 3:
            raise Killed('killed in epoch 2')


@HOOKS.register_module(force=True)
class CRDMemoryProbe(Hook):
    """Keeps what the model holds when training starts (after a resume) and ends."""
    held = {}

    def before_train(self, runner):
        CRDMemoryProbe.held['start'] = {k: v.clone() for k, v in runner.model.state_dict().items()
                                        if 'loss_crd' in k}
        memory = runner.model.distill_losses['loss_crd'].memory
        CRDMemoryProbe.held['labels'] = memory.labels.clone()
        CRDMemoryProbe.held['dataset_labels'] = runner.train_dataloader.dataset.get_gt_labels()

    def after_train(self, runner):
        CRDMemoryProbe.held['end'] = {k: v.clone() for k, v in runner.model.state_dict().items()}


def crd_runner_cfg(work_dir, root, **kwargs):
    cfg = runner_cfg(work_dir, root, crd_model(**kwargs), epochs=2, train_samples=64,
                     val_samples=32, seed=0)
    cfg['custom_hooks'] = [dict(type='ContrastMemoryHook'), dict(type='CRDMemoryProbe')]
    return cfg


def test_memory_survives_a_resume_bit_for_bit(tmp_path, fashion_mnist_root):
    full = crd_runner_cfg(str(tmp_path / 'full'), fashion_mnist_root)
    Runner.from_cfg(Config(full)).train()
    uninterrupted = CRDMemoryProbe.held['end']
    assert int(uninterrupted['distill_losses.loss_crd.memory.step']) == 4  # 2 epochs x 2 iters

    cut = crd_runner_cfg(str(tmp_path / 'cut'), fashion_mnist_root)
    cut['custom_hooks'].append(dict(type='CRDKillAtIter'))
    with pytest.raises(Killed):
        Runner.from_cfg(Config(cut)).train()
    saved = torch.load(tmp_path / 'cut' / 'epoch_1.pth', weights_only=False)['state_dict']
    assert int(saved['distill_losses.loss_crd.memory.step']) == 2
    assert float(saved['distill_losses.loss_crd.z'][0]) > 0  # Z estimated and saved

    resume = crd_runner_cfg(str(tmp_path / 'cut'), fashion_mnist_root)
    resume['resume'] = True
    runner = Runner.from_cfg(Config(resume))
    runner.train()
    # ContrastMemoryHook (before the probe) gave the memory the training set's labels.
    assert CRDMemoryProbe.held['labels'].tolist() == CRDMemoryProbe.held['dataset_labels'].tolist()
    restored = CRDMemoryProbe.held['start']
    assert restored.keys() == {k for k in saved if 'loss_crd' in k}
    for key, value in restored.items():
        assert torch.equal(value, saved[key]), key
    # ... and continuing gives what the uninterrupted run has: memory, Z, student, heads.
    resumed = CRDMemoryProbe.held['end']
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(value, resumed[key]), key


def test_a_memory_of_the_wrong_size_is_refused_before_training(tmp_path, fashion_mnist_root):
    cfg = crd_runner_cfg(str(tmp_path / 'wrong'), fashion_mnist_root, num_samples=100)
    with pytest.raises(ValueError, match='num_samples=64'):
        Runner.from_cfg(Config(cfg)).train()


PROBE = '''
import os, torch
from mmengine.hooks import Hook
from mmkd.registry import HOOKS


@HOOKS.register_module()
class CRDRankMemory(Hook):
    """Saves the memory this process holds after training (a test helper)."""

    def after_train(self, runner):
        loss = runner.model.module.distill_losses['loss_crd']
        torch.save({k: v.clone() for k, v in loss.state_dict().items()},
                   os.path.join(runner.work_dir, f'memory_rank{os.environ["RANK"]}.pth'))
'''


def test_two_ddp_processes_hold_the_same_memory(tmp_path, fashion_mnist_root):
    work = tmp_path / 'ddp'
    cfg = crd_runner_cfg(str(work), fashion_mnist_root)
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader']['batch_size'] = 16  # 32 images a rank: 2 steps an epoch
    cfg['custom_hooks'] = [dict(type='ContrastMemoryHook'), dict(type='CRDRankMemory')]
    cfg['custom_imports'] = dict(imports=['crd_probe'])
    # No buffer broadcast: the ranks agree because each update gathers every rank's batch.
    cfg['model_wrapper_cfg'] = dict(type='MMDistributedDataParallel', broadcast_buffers=False)
    (tmp_path / 'crd_probe.py').write_text(textwrap.dedent(PROBE))
    result = dist_train(cfg, str(tmp_path / 'crd_ddp.py'), timeout=600,
                        python_path=[str(tmp_path)])
    assert result.returncode == 0, run_failure(result)
    ranks = [torch.load(work / f'memory_rank{r}.pth') for r in (0, 1)]
    assert int(ranks[0]['memory.step']) == 4
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    # Every row was updated (each rank saw 32 of the 64 images): updated rows are unit norm.
    for bank in ('memory.student', 'memory.teacher'):
        assert torch.allclose(ranks[0][bank].norm(dim=1), torch.ones(64), atol=1e-5)
    saved = torch.load(work / 'epoch_2.pth', weights_only=False)['state_dict']
    assert torch.equal(saved['distill_losses.loss_crd.memory.teacher'],
                       ranks[1]['memory.teacher'])


@pytest.mark.parametrize('name, samples_, negatives, depth, losses', [
    ('crd_resnet56_resnet8_fashionmnist.py', 15000, 4096, 8, ['loss_crd']),
    ('crd_kd_resnet56_resnet8_fashionmnist.py', 15000, 4096, 8, ['loss_crd', 'loss_kd']),
    ('crd_resnet56_resnet20_cifar100.py', 50000, 16384, 20, ['loss_crd']),
    ('crd_kd_resnet56_resnet20_cifar100.py', 50000, 16384, 20, ['loss_crd', 'loss_kd']),
])
def test_crd_configs_build_their_distillers(name, samples_, negatives, depth, losses):
    cfg = load_config(osp.join(REPO, 'configs', 'crd', name))
    cfg.model.teacher.checkpoint = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        distiller = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    assert distiller.student.backbone.depth == depth
    assert distiller.teacher.backbone.depth == 56
    assert sorted(distiller.distill_losses) == sorted(losses)
    crd = distiller.distill_losses['loss_crd']
    assert crd.memory.student.shape == (samples_, 128)
    assert (crd.num_negatives, crd.temperature, crd.memory.momentum, crd.loss_weight) == (
        negatives, 0.07, 0.5, 0.8)
    assert crd.negatives == 'other_classes'
    if 'loss_kd' in losses:
        kd = distiller.distill_losses['loss_kd']
        assert (kd.tau, kd.loss_weight) == (4, 1.0)
    assert any(h['type'] == 'ContrastMemoryHook' for h in cfg.custom_hooks)
    assert (cfg.train_dataloader.dataset.get('indices') or 50000) == samples_
