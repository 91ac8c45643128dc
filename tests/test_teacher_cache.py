"""Teacher-free epochs: replayed views, the teacher cache, its tool, refusals, DDP and resume.

Real Fashion-MNIST samples with the random crop and flip of the configs, a real trained
tiny teacher, real MMEngine runners and the real ``tools/cache_teacher.py``.
"""
import os.path as osp
import random
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmkd.datasets import VIEW_KEY, ReplayDataset, ReplaySampler
from mmkd.distillers.teacher_cache import TeacherCache, TeacherCacheError, view_keys
from mmkd.engine import apply_teacher_cache
from mmkd.utils import unwrap

from conftest import REPO, dist_run, dist_train, kd_model, run_failure, runner_cfg

sys.path.insert(0, osp.join(REPO, 'tools'))
import cache_teacher  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')


def replay_dataset(root: str, n: int = 64, seed: int = 0) -> ReplayDataset:
    cfg = runner_cfg('/tmp/unused', root, {}, random_aug=True, train_samples=n)
    return ReplayDataset(cfg['train_dataloader']['dataset'], seed=seed)


def cached_cfg(tmp_path, root, teacher, view_epochs=1, epochs=1, samples=128, **cache) -> dict:
    cfg = runner_cfg(str(tmp_path / 'run'), root, kd_model(teacher), epochs=epochs,
                     train_samples=samples, val_samples=64, random_aug=True)
    cfg['teacher_cache'] = dict(dir=str(tmp_path / 'cache'), view_epochs=view_epochs, **cache)
    return cfg


def build_runner(cfg: dict) -> Runner:
    cfg = Config(cfg)
    apply_teacher_cache(cfg)
    return Runner.from_cfg(cfg)


def write_with_tool(tmp_path, cfg: dict, *args: str) -> TeacherCache:
    path = str(tmp_path / f'cached_{len(list(tmp_path.iterdir()))}.py')
    Config(cfg).dump(path)
    return cache_teacher.main([path, '--work-dir', str(tmp_path / 'tool'), *args])


# ----------------------------------------------------------------------------- views
def test_a_view_key_gives_the_same_view_and_leaves_global_randomness_alone(
        fashion_mnist_root):
    dataset = replay_dataset(fashion_mnist_root)
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    expected = np.random.rand(), random.random(), torch.rand(1)
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    first = dataset[(0, 5)]
    assert (np.random.rand(), random.random(), torch.rand(1)) == expected
    assert torch.equal(first['inputs'], dataset[(0, 5)]['inputs'])
    assert first['data_samples'].metainfo[VIEW_KEY] == (0, 5)
    # Other view epochs and other seeds give other crops / flips of the same image.
    others = [dataset[(e, 5)]['inputs'] for e in range(1, 6)]
    others += [replay_dataset(fashion_mnist_root, seed=1)[(0, 5)]['inputs']]
    assert not all(torch.equal(first['inputs'], other) for other in others)
    # A plain index is the wrapped dataset's sample, without a key.
    assert VIEW_KEY not in dataset[5]['data_samples'].metainfo
    dataset.check_replays()


def test_the_sampler_yields_view_keys_that_cycle_over_view_epochs(fashion_mnist_root):
    dataset = replay_dataset(fashion_mnist_root, n=40)
    sampler = ReplaySampler(dataset, shuffle=True, seed=3, view_epochs=2)
    seen = {}
    for epoch in range(4):
        sampler.set_epoch(epoch)
        keys = list(sampler)
        assert {k[0] for k in keys} == {epoch % 2}
        assert sorted(k[1] for k in keys) == list(range(40))
        seen[epoch] = [k[1] for k in keys]
    assert seen[0] != seen[2]  # the order still changes every epoch


# ----------------------------------------------------------------------------- the store
def test_the_cache_holds_what_the_teacher_computes_on_the_replayed_views(
        tmp_path, fashion_mnist_root, tiny_teacher):
    cfg = cached_cfg(tmp_path, fashion_mnist_root, tiny_teacher, view_epochs=2)
    cache = write_with_tool(tmp_path, cfg)
    assert cache.coverage().tolist() == [1.0, 1.0]
    # Load the views again in another order and run the teacher on them online.
    runner = build_runner(cfg)
    model = unwrap(runner.model)
    loader = runner.train_dataloader
    loader.sampler.set_epoch(1)
    batch = model.data_preprocessor(next(iter(loader)), True)
    keys = view_keys(batch['data_samples'])
    assert {k[0] for k in keys} == {1}
    model.eval()
    with torch.no_grad():
        online = model.teacher(batch['inputs'], batch['data_samples'], mode='tensor')
    stored = cache.read('teacher.logits', keys)
    assert stored.dtype == torch.float32 and stored.shape == online.shape
    torch.testing.assert_close(stored, online, rtol=2e-3, atol=2e-3)  # stored in float16
    assert TeacherCache.bytes_per_row({'teacher.logits': 10}) == 21
    assert TeacherCache.bytes_per_row({'teacher.logits': 1000}, topk=10) == 1 + 20 + 20 + 4


def test_top_k_storage_keeps_the_top_probabilities_and_the_tail_mass(tmp_path):
    logits = torch.randn(6, 50) * 3
    cache = TeacherCache.open(str(tmp_path / 'c'), {'x': 1}, samples=6, view_epochs=1,
                              widths={'t.logits': 50}, dtype='float32', topk=5)
    keys = [(0, i) for i in range(6)]
    cache.write({'t.logits': logits}, keys)
    restored = cache.read('t.logits', keys)
    p, q = logits.softmax(1), restored.softmax(1)
    top = logits.topk(5, dim=1).indices
    torch.testing.assert_close(q.gather(1, top), p.gather(1, top))
    torch.testing.assert_close(q.sum(1), torch.ones(6))
    assert torch.equal(restored.topk(5, dim=1).indices.sort(1).values, top.sort(1).values)
    assert sorted(osp.basename(p) for p in (tmp_path / 'c').iterdir()) == [
        'meta.json', 't.logits.index.npy', 't.logits.lse.npy', 't.logits.topk.npy',
        'written.npy']


# ----------------------------------------------------------------------------- training
def test_training_reads_the_cache_and_never_runs_the_teacher(tmp_path, fashion_mnist_root,
                                                            tiny_teacher):
    cfg = cached_cfg(tmp_path, fashion_mnist_root, tiny_teacher, view_epochs=2, epochs=2)
    write_with_tool(tmp_path, cfg)
    cfg['custom_hooks'] = []  # no teacher evaluation: count the training steps' forwards
    runner = build_runner(cfg)
    calls = []
    unwrap(runner.model).teacher.register_forward_pre_hook(
        lambda _, args: calls.append(len(args[0])))
    runner.train()
    assert calls == [2]  # only the 2-image dry run that finds which records are vectors
    # The same run with an empty cache runs the teacher online (and writes): same seed,
    # same views, same order, so the same KD losses up to the float16 storage.
    online = build_runner(dict(cfg, work_dir=str(tmp_path / 'online'),
                               teacher_cache=dict(cfg['teacher_cache'],
                                                  dir=str(tmp_path / 'empty'))))
    online_calls = []
    unwrap(online.model).teacher.register_forward_pre_hook(
        lambda _, args: online_calls.append(len(args[0])))
    online.train()
    assert online_calls == [2] + [32] * 8  # the dry run, then 2 epochs of 4 batches
    cached, computed = logged(runner, 'loss_kd'), logged(online, 'loss_kd')
    assert len(cached) == len(computed) == 8
    np.testing.assert_allclose(cached, computed, rtol=1e-2)


def logged(runner, key: str) -> list:
    return [float(v) for v in runner.message_hub.get_scalar(f'train/{key}').data[0]]


def test_the_first_epochs_write_the_cache_and_a_resumed_run_reads_it(
        tmp_path, fashion_mnist_root, tiny_teacher):
    cfg = cached_cfg(tmp_path, fashion_mnist_root, tiny_teacher, view_epochs=1, epochs=1)
    runner = build_runner(cfg)
    runner.train()
    cache = unwrap(runner.model).teacher_cache
    assert cache.coverage().tolist() == [1.0]
    # Resume for a second epoch: it replays view epoch 0 from the cache.
    cfg2 = dict(cfg, resume=True, load_from=str(tmp_path / 'run' / 'epoch_1.pth'),
                train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1))
    cfg2['custom_hooks'] = []
    resumed = build_runner(cfg2)
    calls = []
    unwrap(resumed.model).teacher.register_forward_pre_hook(
        lambda _, args: calls.append(len(args[0])))
    resumed.train()
    assert resumed.epoch == 2 and calls == [2]  # the dry run only
    assert unwrap(resumed.model).teacher_cache.take_counts() == {'read': 0, 'written': 0}


def test_the_tool_continues_an_interrupted_cache(tmp_path, fashion_mnist_root, tiny_teacher):
    # A training run of one epoch wrote view epoch 0 of 2; the tool adds only view epoch 1.
    cfg = cached_cfg(tmp_path, fashion_mnist_root, tiny_teacher, view_epochs=2, epochs=1)
    cfg['custom_hooks'] = []
    build_runner(cfg).train()
    before = np.load(tmp_path / 'cache' / 'teacher.logits.npy')[0].copy()
    cache = write_with_tool(tmp_path, cfg)
    assert cache.coverage().tolist() == [1.0, 1.0]
    np.testing.assert_array_equal(np.load(tmp_path / 'cache' / 'teacher.logits.npy')[0], before)


def test_with_two_teachers_the_logit_teacher_is_cached_and_the_feature_teacher_runs(
        tmp_path, fashion_mnist_root, tiny_teacher):
    teacher = dict(tiny_teacher['model'], checkpoint=tiny_teacher['checkpoint'])
    logits = dict(logits=dict(type='ModuleOutputs', source='head.fc'))
    cfg = cached_cfg(tmp_path, fashion_mnist_root, tiny_teacher, view_epochs=1, epochs=2,
                     samples=64)
    cfg['model'] = dict(
        type='MultiTeacherDistiller',
        student=kd_model(tiny_teacher)['student'],
        teachers=dict(logit=teacher, feature=teacher),
        student_recorders=dict(logits, feat=dict(type='ModuleOutputs',
                                                 source='backbone.layer3')),
        teacher_recorders=dict(logit=logits, feature=dict(
            feat=dict(type='ModuleOutputs', source='backbone.layer3'))),
        connectors=dict(feat_s=dict(type='ConvBNConnector', input='student.feat',
                                    like='feature.feat')),
        losses=dict(loss_kd=dict(type='KDLoss', student='student.logits',
                                 teacher='logit.logits', tau=4),
                    loss_mse=dict(type='MSELoss', student='feat_s', teacher='feature.feat')),
        dry_run_shape=(1, 28, 28))
    cfg['custom_hooks'] = []
    runner = build_runner(cfg)
    calls = {'logit': [], 'feature': []}
    for name, net in unwrap(runner.model).teachers.items():
        net.register_forward_pre_hook(lambda _, args, name=name: calls[name].append(len(args[0])))
    runner.train()
    cache = unwrap(runner.model).teacher_cache
    assert list(cache.widths) == ['logit.logits']
    # Epoch 1 writes view epoch 0, epoch 2 reads it; the feature teacher runs on every batch.
    assert calls['logit'] == [2, 32, 32] and calls['feature'] == [2, 32, 32, 32, 32]


def test_the_zoo_config_sets_up_replayed_views_and_the_hook(fashion_mnist_root):
    from mmkd.distillers import load_config
    from mmkd.registry import DATA_SAMPLERS, DATASETS
    cfg = load_config(osp.join(REPO, 'configs', 'kd',
                               'kd_resnet56_resnet8_fashionmnist_cached.py'))
    notes = apply_teacher_cache(cfg)
    assert notes == ['teacher cache in work_dirs/teacher_cache/resnet56_fashionmnist_15k: '
                     '4 view epoch(s) of seed 0']
    hooks = [h for h in cfg.custom_hooks if h['type'] == 'mmkd.TeacherCacheHook']
    assert hooks == [dict(type='mmkd.TeacherCacheHook',
                          dir='work_dirs/teacher_cache/resnet56_fashionmnist_15k')]
    loader = cfg.train_dataloader
    loader.dataset.dataset.data_root = fashion_mnist_root
    dataset = DATASETS.build(loader.dataset)
    sampler = DATA_SAMPLERS.build(dict(loader.sampler, dataset=dataset))
    assert isinstance(dataset, ReplayDataset) and len(dataset) == 15000
    assert dataset.seed == 0
    assert isinstance(sampler, ReplaySampler) and sampler.view_epochs == 4 and sampler.shuffle
    # A misspelt entry is refused with what it takes.
    cfg.teacher_cache = dict(dirr='x')
    with pytest.raises(TeacherCacheError, match=r'give dir=<directory>.*unknown: \[\'dirr\'\]'):
        apply_teacher_cache(cfg)


# ----------------------------------------------------------------------------- refusals
def test_a_cache_of_another_teacher_or_other_views_is_refused(tmp_path, fashion_mnist_root,
                                                             tiny_teacher):
    cfg = cached_cfg(tmp_path, fashion_mnist_root, tiny_teacher, samples=64)
    write_with_tool(tmp_path, cfg)
    # Another teacher checkpoint: the same architecture, other weights.
    other = str(tmp_path / 'other_teacher.pth')
    state = torch.load(tiny_teacher['checkpoint'], weights_only=False)
    state['state_dict'] = {k: v + 0.01 if v.is_floating_point() else v
                           for k, v in state['state_dict'].items()}
    torch.save(state, other)
    cfg_other = dict(cfg, model=kd_model(dict(tiny_teacher, checkpoint=other)))
    with pytest.raises(TeacherCacheError,
                       match=r'(?s)teachers\.teacher\.checkpoint_sha256.*Delete'):
        build_runner(cfg_other).train()
    # Other views: another view seed, another pipeline.
    with pytest.raises(TeacherCacheError, match=r'data\.view_seed: cache has 0, this run has 7'):
        build_runner(dict(cfg, teacher_cache=dict(cfg['teacher_cache'], seed=7))).train()
    flipless = dict(cfg, train_dataloader=dict(cfg['train_dataloader']))
    flipless['train_dataloader']['dataset'] = dict(
        cfg['train_dataloader']['dataset'],
        pipeline=[p for p in cfg['train_dataloader']['dataset']['pipeline']
                  if 'RandomFlip' not in p['type']])
    with pytest.raises(TeacherCacheError, match=r'data\.pipeline'):
        build_runner(flipless).train()


def test_feature_teachers_and_unreplayable_data_are_refused(tmp_path, fashion_mnist_root,
                                                           tiny_teacher):
    cfg = cached_cfg(tmp_path, fashion_mnist_root, tiny_teacher, samples=64)
    cfg['model'] = kd_model(
        tiny_teacher, recorders=dict(feat=dict(type='ModuleOutputs', source='backbone.layer3')),
        losses=dict(loss_mse=dict(type='MSELoss', student='feat_s', teacher='feat')),
        connectors=dict(feat_s=dict(type='ConvBNConnector', input='student.feat',
                                    like='teacher.feat')))
    with pytest.raises(TeacherCacheError, match='feature-map methods run their teacher online'):
        build_runner(cfg).train()
    plain = Config(cached_cfg(tmp_path, fashion_mnist_root, tiny_teacher, samples=64))
    plain.custom_hooks = [dict(type='mmkd.TeacherCacheHook', dir=str(tmp_path / 'c2'))]
    with pytest.raises(TeacherCacheError, match="ReplayDataset.*ReplaySampler"):
        Runner.from_cfg(plain).train()


def test_a_pipeline_with_a_generator_of_its_own_is_refused(fashion_mnist_root):
    from mmcv.transforms import BaseTransform

    class OwnGenerator(BaseTransform):
        rng = np.random.default_rng()

        def transform(self, results):
            results['img'] = results['img'] + self.rng.integers(0, 2)
            return results

    dataset = replay_dataset(fashion_mnist_root)
    dataset.dataset.pipeline.transforms.insert(0, OwnGenerator())
    with pytest.raises(ValueError, match='two different views for the same view key'):
        for _ in range(5):  # a draw of the same value twice is possible: try a few times
            dataset.check_replays()


# ----------------------------------------------------------------------------- DDP
def test_two_processes_write_their_own_samples_of_one_cache(tmp_path, fashion_mnist_root,
                                                           tiny_teacher):
    cfg = cached_cfg(tmp_path, fashion_mnist_root, tiny_teacher, view_epochs=2, epochs=2)
    cfg['model_wrapper_cfg'] = dict(type='MMDistributedDataParallel',
                                    find_unused_parameters=False)
    cfg['custom_hooks'] = []
    cfg['log_level'] = 'INFO'
    result = dist_train(cfg, str(tmp_path / 'ddp.py'), timeout=600)
    assert result.returncode == 0, run_failure(result)
    written = np.load(tmp_path / 'cache' / 'written.npy')
    assert written.shape == (2, 128) and written.all()
    # Rank 0 logs its own half of the 128 samples, computed in both epochs.
    assert result.stdout.count('teacher cache: 0 sample(s) read, 64 computed by the teacher '
                               'and stored') == 2


def test_the_tool_writes_one_cache_from_two_processes(tmp_path, fashion_mnist_root,
                                                     tiny_teacher):
    cfg = cached_cfg(tmp_path, fashion_mnist_root, tiny_teacher, view_epochs=2)
    cfg['custom_hooks'] = []
    cfg['log_level'] = 'INFO'
    path = str(tmp_path / 'cached.py')
    Config(cfg).dump(path)
    result = dist_run('cache_teacher.py', [path, '--work-dir', str(tmp_path / 'ddp')],
                      timeout=600)
    assert result.returncode == 0, run_failure(result)
    written = np.load(tmp_path / 'cache' / 'written.npy')
    assert written.shape == (2, 128) and written.all()
    # Rank 0 logs its own half: 64 samples in each of the two view epochs.
    assert 'stored 128 sample view(s)' in result.stdout, run_failure(result)
    # The same rows as one process writes (float16 storage; other batches per process).
    single = dict(cfg, teacher_cache=dict(cfg['teacher_cache'], dir=str(tmp_path / 'single')))
    write_with_tool(tmp_path, single)
    np.testing.assert_allclose(np.load(tmp_path / 'cache' / 'teacher.logits.npy'),
                               np.load(tmp_path / 'single' / 'teacher.logits.npy'),
                               rtol=2e-3, atol=2e-3)
