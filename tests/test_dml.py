"""Deep Mutual Learning: DMLLoss, MutualLearner in real runners, one and two processes."""
import copy
import glob
import json
import math
import os.path as osp
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import Runner, load_checkpoint
from mmpretrain.structures import DataSample

from mmkd.distillers import DistillerConfigError
from mmkd.losses import DMLLoss
from mmkd.registry import DATASETS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from conftest import REPO, dist_train, run_failure, runner_cfg, tiny_classifier

sys.path.insert(0, osp.join(REPO, 'tools', 'model_converters'))
from export_student import export_student  # noqa: E402


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def logits_of(*probs):
    return torch.log(torch.tensor(probs, dtype=torch.float64)).float()


# ------------------------------------------------------------------ the loss
def test_dml_loss_on_a_hand_computed_cohort_of_three():
    # Member k predicts (0.5, 0.5); its peers (0.8, 0.2) and (0.25, 0.75).
    p_k, p_1, p_2 = (0.5, 0.5), (0.8, 0.2), (0.25, 0.75)
    z_k, z_1, z_2 = logits_of(p_k), logits_of(p_1), logits_of(p_2)
    # KL(p1||pk) = .8 ln 1.6 + .2 ln .4 = 0.19274; KL(p2||pk) = .25 ln .5 + .75 ln 1.5 = 0.13081
    expected = (kl(p_1, p_k) + kl(p_2, p_k)) / 2
    assert expected == pytest.approx(0.161778, abs=1e-5)
    assert DMLLoss()(z_k, [z_1, z_2]).item() == pytest.approx(expected, rel=1e-5)
    assert DMLLoss()(z_k, torch.stack([z_1, z_2])).item() == pytest.approx(expected, rel=1e-5)
    assert DMLLoss(loss_weight=2)(z_k, [z_1, z_2]).item() == pytest.approx(2 * expected, 1e-5)

    # DML_e: the peers' mean (0.525, 0.475) is the target.
    mean = (0.525, 0.475)
    assert DMLLoss(ensemble=True)(z_k, [z_1, z_2]).item() == pytest.approx(kl(mean, p_k), 1e-4)

    # Jensen-Shannon: symmetric in the pair, averaged over peers.
    def js(p, q):
        m = [(a + b) / 2 for a, b in zip(p, q)]
        return kl(p, m) / 2 + kl(q, m) / 2

    got = DMLLoss(form='js')(z_k, [z_1, z_2]).item()
    assert got == pytest.approx((js(p_1, p_k) + js(p_2, p_k)) / 2, rel=1e-4)
    assert DMLLoss(form='js')(z_1, [z_k]).item() == pytest.approx(js(p_k, p_1), rel=1e-4)

    # Peers as probabilities (what processes exchange), at a temperature: tau^2 * KL.
    loss = DMLLoss(tau=2)
    z = torch.tensor([[2.0, 0.0]])
    peer = torch.tensor([[0.0, 2.0]])
    p, q = F.softmax(peer / 2, 1)[0].tolist(), F.softmax(z / 2, 1)[0].tolist()
    assert loss(z, loss.probs(peer), teacher_is_prob=True).item() == pytest.approx(
        4 * kl(p, q), rel=1e-5)


def test_dml_loss_sends_no_gradient_to_peers():
    own = torch.randn(6, 10, requires_grad=True)
    peers = [torch.randn(6, 10, requires_grad=True) for _ in range(2)]
    for loss in (DMLLoss(), DMLLoss(form='js'), DMLLoss(ensemble=True)):
        loss(own, peers).backward()
        assert own.grad is not None and own.grad.abs().sum() > 0
        assert all(p.grad is None for p in peers)
        own.grad = None


def test_dml_loss_errors_name_the_problem():
    with pytest.raises(ValueError, match="form must be one of"):
        DMLLoss(form='kl2')
    with pytest.raises(ValueError, match='shape'):
        DMLLoss()(torch.randn(4, 10), torch.randn(4, 5))


# ------------------------------------------------------------------ the cohort
def cohort(order='sequential', **kwargs) -> dict:
    return dict(type='MutualLearner', order=order,
                members=dict(a=tiny_classifier(), b=tiny_classifier()),
                data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor', num_classes=10,
                                       mean=[72.94], std=[90.02], to_rgb=False), **kwargs)


def optimizers(model, lr=0.1):
    return OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='CohortOptimWrapperConstructor',
        optim_wrapper_cfg=dict(optimizer=dict(type='SGD', lr=lr, momentum=0.9))))(model)


def batch(n=16, labels=None):
    g = torch.Generator().manual_seed(1)
    labels = labels if labels is not None else torch.randint(0, 10, (n, ), generator=g).tolist()
    return dict(inputs=[torch.randint(0, 255, (1, 28, 28), generator=g, dtype=torch.uint8)
                        for _ in labels],
                data_samples=[DataSample().set_gt_label(y) for y in labels])


def test_order_sequential_versus_synchronous():
    torch.manual_seed(0)
    learners = {order: MODELS.build(cohort(order)) for order in ('sequential', 'synchronous')}
    learners['synchronous'].load_state_dict(learners['sequential'].state_dict())
    start = copy.deepcopy(learners['sequential'])
    logs, calls = {}, {}
    for order, model in learners.items():
        calls[order] = []
        model.members['a'].backbone.register_forward_hook(
            lambda *_, o=order: calls[o].append('a'))
        logs[order] = model.train_step(batch(), optimizers(model))
    # Algorithm 1 computes member a's predictions again after a's update.
    assert calls == {'sequential': ['a', 'a'], 'synchronous': ['a']}
    # Member a learns from b's first predictions in both orders: the same update.
    for key, value in learners['sequential'].members['a'].state_dict().items():
        assert torch.allclose(value, learners['synchronous'].members['a'].state_dict()[key])
    assert not torch.equal(learners['sequential'].members['b'].backbone.stem[0].weight,
                           learners['synchronous'].members['b'].backbone.stem[0].weight)

    # Member b's mimicry target: a before its update (synchronous) or after (sequential).
    inputs = start.data_preprocessor(batch(), True)['inputs']

    def logits(net):
        net = copy.deepcopy(net).train()  # train-mode BN, as in the step
        return net.head(net.extract_feat(inputs)).detach()

    b0 = logits(start.members['b'])
    before, after = logits(start.members['a']), logits(learners['sequential'].members['a'])
    sync, seq = logs['synchronous']['b/loss_dml'].item(), logs['sequential']['b/loss_dml'].item()
    assert sync == pytest.approx(DMLLoss()(b0, before).item(), rel=1e-4)
    assert seq == pytest.approx(DMLLoss()(b0, after).item(), rel=1e-4)
    assert abs(seq - sync) > 1e-4
    # Recomputing a's predictions did not move its BN statistics a second time.
    bn = 'backbone.stem.1.num_batches_tracked'
    assert learners['sequential'].members['a'].state_dict()[bn].item() == 1


def test_no_gradient_reaches_a_member_from_its_peers_loss():
    torch.manual_seed(0)
    model = MODELS.build(cohort('synchronous'))
    passes = {'a': 0, 'b': 0}
    for name in passes:
        weight = model.members[name].backbone.stem[0].weight
        weight.register_hook(lambda grad, n=name: passes.__setitem__(n, passes[n] + 1))
    log = model.train_step(batch(), optimizers(model))
    assert passes == {'a': 1, 'b': 1}  # each member's weights see only its own loss
    assert log['a/loss_dml'] > 0 and log['b/loss_dml'] > 0
    assert log['loss'] == pytest.approx((log['a/loss'] + log['b/loss']).item())
    assert log['a/loss'] == pytest.approx((log['a/loss_task'] + log['a/loss_dml']).item())


def test_unlabelled_samples_give_only_the_mimicry_loss(fashion_mnist_root):
    dataset = DATASETS.build(dict(
        type='PartiallyLabeledDataset', labeled_fraction=0.25, seed=3,
        dataset=dict(_scope_='mmpretrain', type='FashionMNIST', data_root=fashion_mnist_root,
                     split='train', indices=16, pipeline=[dict(type='PackInputs')])))
    labels = [dataset[i]['data_samples'].gt_label.item() for i in range(len(dataset))]
    assert sum(y >= 0 for y in labels) == 4 and labels.count(-1) == 12
    assert [y >= 0 for y in labels] == [dataset.is_labeled(i) for i in range(16)]
    assert dataset.metainfo['classes'][0] == 'T-shirt/top'

    torch.manual_seed(0)
    model = MODELS.build(cohort('synchronous'))
    data = dict(inputs=[dataset[i]['inputs'] for i in range(16)],
                data_samples=[dataset[i]['data_samples'] for i in range(16)])
    start = copy.deepcopy(model)
    log = model.train_step(data, optimizers(model))
    x = start.data_preprocessor(copy.deepcopy(data), True)['inputs']
    net = start.members['a'].train()
    logits = net.head(net.extract_feat(x))
    keep = [i for i, y in enumerate(labels) if y >= 0]
    task = F.cross_entropy(logits[keep], torch.tensor([labels[i] for i in keep]))
    assert log['a/loss_task'].item() == pytest.approx(task.item(), rel=1e-4)

    unlabelled = dict(inputs=data['inputs'][:2], data_samples=[DataSample().set_gt_label(-1)] * 2)
    log = model.train_step(unlabelled, optimizers(model))
    assert log['a/loss_task'] == 0 and log['a/loss_dml'] > 0


def test_predict_gives_each_member_and_the_ensemble():
    torch.manual_seed(0)
    model = MODELS.build(cohort()).eval()
    data = model.data_preprocessor(batch(4), False)
    samples = model(**data, mode='predict')
    with torch.no_grad():
        probs = {n: F.softmax(model.members[n](data['inputs'], mode='tensor'), 1) for n in 'ab'}
    mean = (probs['a'] + probs['b']) / 2
    for i, sample in enumerate(samples):
        assert torch.allclose(sample.pred_score, mean[i], atol=1e-6)
        assert torch.allclose(sample.member_preds['b']['pred_score'], probs['b'][i], atol=1e-6)
        assert sample.member_preds['ensemble']['pred_label'].item() == mean[i].argmax().item()
    one = MODELS.build(cohort(predict_with='b')).eval()
    one.load_state_dict(model.state_dict())
    assert torch.allclose(one(**data, mode='predict')[0].pred_score, probs['b'][0], atol=1e-6)


@pytest.mark.parametrize('change, message', [
    (dict(members=dict(a=tiny_classifier())), 'at least 2 members'),
    (dict(order='random'), 'order must be one of'),
    (dict(predict_with='c'), "neither 'ensemble' nor a member"),
    (dict(members={'a': tiny_classifier(), 'ensemble': tiny_classifier()}), 'identifier other'),
    (dict(distributed=True), 'one process per member: 2 members, 1 process'),
])
def test_bad_cohort_configs_say_what_to_do(change, message):
    with pytest.raises(DistillerConfigError, match=message):
        MODELS.build({**cohort(), **change})


def test_one_optimizer_for_the_cohort_is_refused():
    from mmengine.optim import OptimWrapper
    model = MODELS.build(cohort())
    single = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(DistillerConfigError, match='CohortOptimWrapperConstructor'):
        model.train_step(batch(), single)


# ------------------------------------------------------------------ real runners
def scalars(work_dir):
    lines = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            lines += [json.loads(line) for line in f]
    return lines


def dml_runner_cfg(work_dir, data_root, epochs, model=None, train_samples=64) -> dict:
    cfg = runner_cfg(work_dir, data_root, model or cohort(), epochs=epochs,
                     train_samples=train_samples, val_samples=32)
    cfg['optim_wrapper'] = dict(constructor='CohortOptimWrapperConstructor',
                                optimizer=dict(type='SGD', lr=0.05, momentum=0.9),
                                members=dict(b=dict(optimizer=dict(lr=0.02))))
    cfg['val_evaluator'] = dict(type='CohortMetric',
                                metric=dict(type='mmpretrain.Accuracy', topk=(1, )))
    cfg['test_evaluator'] = cfg['val_evaluator']
    cfg['default_scope'] = 'mmkd'
    return cfg


def test_cohort_trains_validates_saves_resumes_and_exports(tmp_path, fashion_mnist_root):
    work = str(tmp_path / 'run')
    runner = Runner.from_cfg(Config(dml_runner_cfg(work, fashion_mnist_root, epochs=1)))
    runner.train()
    assert runner.optim_wrapper['b'].get_lr()['lr'][0] < runner.optim_wrapper['a'].get_lr()[
        'lr'][0]  # per-member overrides
    logged = scalars(work)
    assert any('a/loss_dml' in line and 'b/loss_task' in line for line in logged)
    val = [line for line in logged if 'ensemble/accuracy/top1' in line]
    assert val and {'a/accuracy/top1', 'b/accuracy/top1'} <= set(val[-1])

    ckpt = torch.load(osp.join(work, 'epoch_1.pth'), weights_only=False)
    assert set(ckpt['optimizer']) == {'a', 'b'} and set(ckpt['param_schedulers']) == {'a', 'b'}
    assert any(k.startswith('members.b.') for k in ckpt['state_dict'])

    # Resume for a second epoch: members' weights and momentum pick up where they were.
    cfg = dml_runner_cfg(work, fashion_mnist_root, epochs=2)
    cfg.update(resume=True, load_from=osp.join(work, 'epoch_1.pth'))
    resumed = Runner.from_cfg(Config(cfg))
    resumed.load_or_resume()
    for key, value in ckpt['state_dict'].items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    momentum = resumed.optim_wrapper['b'].optimizer.state_dict()['state']
    assert momentum and all(torch.equal(momentum[i]['momentum_buffer'],
                                        ckpt['optimizer']['b']['state'][i]['momentum_buffer'])
                            for i in momentum)
    resumed.train()
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))
    assert resumed.train_loop.iter == 2 * 2

    # Any member exports as a plain mmpretrain classifier.
    dst = str(tmp_path / 'b.pth')
    export_student(osp.join(work, 'epoch_2.pth'), dst, member='b')
    plain = MODELS.build(tiny_classifier()).eval()
    load_checkpoint(plain, dst, strict=True)
    x = torch.randn(3, 1, 28, 28)
    learner = resumed.model.eval()
    assert torch.allclose(plain(x, mode='tensor'), learner(x, mode='tensor')['b'], atol=1e-6)
    with pytest.raises(ValueError, match=r"\['a', 'b'\]: choose one with --member"):
        export_student(osp.join(work, 'epoch_2.pth'), dst)
    with pytest.raises(ValueError, match="no cohort member 'c'"):
        export_student(osp.join(work, 'epoch_2.pth'), dst, member='c')


PROBE = '''
import json, os, torch
from mmengine.hooks import Hook
from mmkd.registry import HOOKS


@HOOKS.register_module()
class MemberProbe(Hook):
    """Writes what this process holds (a test helper)."""

    def before_train(self, runner):
        model = runner.model
        rank = int(os.environ['RANK'])
        sums = {n: float(sum(p.double().sum() for p in m.parameters()))
                for n, m in model.members.items()}
        with open(os.path.join(runner.work_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(dict(members=list(model.members), wrapper=type(model).__name__,
                           sums=sums), f)
'''


def test_distributed_cohort_one_member_per_process(tmp_path, fashion_mnist_root):
    work = str(tmp_path / 'dist')
    cfg = dml_runner_cfg(work, fashion_mnist_root, epochs=1, model=cohort(
        'synchronous', distributed=True))
    cfg['runner_type'] = 'CohortRunner'
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader']['sampler'] = dict(type='SharedSampler',
                                                     shuffle=split == 'train')
    cfg['custom_hooks'] = [dict(type='MemberProbe')]
    cfg['custom_imports'] = dict(imports=['dml_probe'])
    (tmp_path / 'dml_probe.py').write_text(textwrap.dedent(PROBE))
    result = dist_train(cfg, str(tmp_path / 'dml_dist.py'), timeout=600,
                        python_path=[str(tmp_path)])
    assert result.returncode == 0, run_failure(result)

    held = [json.load(open(osp.join(work, f'rank{r}.json'))) for r in (0, 1)]
    assert [h['members'] for h in held] == [['a'], ['b']]
    assert all(h['wrapper'] == 'MutualLearner' for h in held)  # no DDP around the cohort
    # Members start from the weights a one-process cohort with the same seed has.
    torch.manual_seed(0)
    single = MODELS.build(cohort())
    single.init_weights()
    for rank, name in enumerate('ab'):
        expected = float(sum(p.detach().double().sum()
                             for p in single.members[name].parameters()))
        assert held[rank]['sums'][name] == pytest.approx(expected, rel=1e-9)

    # Rank 0 logged both members and wrote one checkpoint with the whole cohort.
    logged = scalars(work)
    assert any('a/loss_dml' in line and 'b/loss_dml' in line for line in logged)
    assert any('ensemble/accuracy/top1' in line and 'b/accuracy/top1' in line
               for line in logged)
    ckpt = torch.load(osp.join(work, 'epoch_1.pth'), weights_only=False)
    assert set(ckpt['optimizer']) == {'a', 'b'} and set(ckpt['param_schedulers']) == {'a', 'b'}
    single.load_state_dict(ckpt['state_dict'])  # strict: every member is there


@pytest.mark.parametrize('name, members', [
    ('dml_resnet8x2_fashionmnist.py', ['resnet8_1', 'resnet8_2']),
    ('dml_resnet8x3_fashionmnist.py', ['resnet8_1', 'resnet8_2', 'resnet8_3']),
    ('dml_resnet20_resnet56_fashionmnist.py', ['resnet20', 'resnet56']),
    ('dml_resnet32x2_cifar100.py', ['resnet32_1', 'resnet32_2']),
])
def test_dml_configs_build_their_cohorts(name, members):
    from mmkd.distillers import load_config
    cfg = load_config(osp.join(REPO, 'configs', 'dml', name))
    model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    assert model.member_names == members
    wrappers = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type=cfg.optim_wrapper.constructor, optim_wrapper_cfg={
            k: v for k, v in cfg.optim_wrapper.items() if k != 'constructor'}))(model)
    assert list(wrappers.keys()) == members
    assert cfg.val_evaluator.type == 'CohortMetric'
