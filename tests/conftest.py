"""Shared fixtures: the real Fashion-MNIST files and tiny runnable configs."""
import copy
import os
import os.path as osp
import socket
import subprocess
import sys
import tempfile
import uuid
from typing import Sequence

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(REPO, 'tools', 'dataset_converters'))

# Keep the tests' teacher metrics out of the user's cache (TeacherEvaluationHook).
os.environ.setdefault('MMKD_CACHE_DIR', tempfile.mkdtemp(prefix='mmkd-test-cache-'))

import mmkd  # noqa: E402,F401
from mmkd.utils import register_all_modules  # noqa: E402

register_all_modules(init_default_scope=False)


@pytest.fixture(autouse=True)
def _own_default_scope():
    """Each test starts with the default scopes as they were: a Runner built in an earlier
    test (default_scope='mmdet', say) would otherwise decide where bare names are built."""
    from mmengine.registry import DefaultScope
    before = dict(DefaultScope._instance_dict)
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(before)


@pytest.fixture(scope='module')
def one_thread():
    """Tiny convolutions run fastest on one thread on a shared CPU (a module asks for it
    with ``pytestmark = pytest.mark.usefixtures('one_thread')``)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def fashion_mnist_root() -> str:
    """data/fashion_mnist of the repository, prepared if needed."""
    from prepare_fashion_mnist import prepare
    root = osp.join(REPO, 'data', 'fashion_mnist')
    if not osp.isfile(osp.join(root, '.prepared')):
        prepare(root)
    return root


def tiny_classifier(depth: int = 8, widths=(4, 4, 8, 8)) -> dict:
    """A CIFAR ResNet classifier small enough to train in a test."""
    return dict(
        _scope_='mmpretrain', type='ImageClassifier',
        backbone=dict(type='mmkd.CIFARResNet', depth=depth, widths=widths, in_channels=1),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=widths[-1],
                  loss=dict(type='CrossEntropyLoss')))


def runner_cfg(work_dir: str, data_root: str, model: dict, epochs: int = 2,
               train_samples: int = 256, val_samples: int = 128, seed: int = 0,
               random_aug: bool = False) -> dict:
    """A complete Runner config on a slice of Fashion-MNIST."""
    from mmengine.config import Config
    base = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'datasets', 'fashion_mnist.py'))
    cfg = copy.deepcopy(base.to_dict())
    cfg.update(Config.fromfile(osp.join(REPO, 'configs', '_base_',
                                        'default_runtime.py')).to_dict())
    pipeline = cfg['train_pipeline'] if random_aug else cfg['test_pipeline']
    for split, n, pipe in (('train', train_samples, pipeline),
                           ('val', val_samples, cfg['test_pipeline'])):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=32, num_workers=0, persistent_workers=False)
        loader['dataset'].update(data_root=data_root, indices=n, pipeline=pipe)
    cfg['test_dataloader'] = copy.deepcopy(cfg['val_dataloader'])
    cfg.update(
        work_dir=work_dir, model=model,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9,
                                          weight_decay=5e-4)),
        param_scheduler=[dict(type='CosineAnnealingLR', by_epoch=True, T_max=epochs)],
        train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=1),
        val_cfg=dict(), test_cfg=dict(),
        randomness=dict(seed=seed, deterministic=True),
        default_hooks=dict(
            timer=dict(type='IterTimerHook'),
            logger=dict(type='LoggerHook', interval=1),
            param_scheduler=dict(type='ParamSchedulerHook'),
            checkpoint=dict(type='CheckpointHook', interval=1, save_best='auto'),
            sampler_seed=dict(type='DistSamplerSeedHook')),
        log_level='WARNING',
        experiment_name=f'test_{uuid.uuid4().hex[:12]}',
    )
    return cfg


TEACHER_WIDTHS = (8, 8, 16, 16)
STUDENT_WIDTHS = (4, 4, 8, 8)


@pytest.fixture(scope='session')
def tiny_teacher(tmp_path_factory, fashion_mnist_root) -> dict:
    """A tiny ResNet-14 teacher trained for two epochs: its config and checkpoint."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    work_dir = str(tmp_path_factory.mktemp('teacher'))
    model = tiny_classifier(depth=14, widths=TEACHER_WIDTHS)
    cfg = runner_cfg(work_dir, fashion_mnist_root, model, epochs=2, train_samples=512)
    Runner.from_cfg(Config(cfg)).train()
    return dict(model=model, checkpoint=osp.join(work_dir, 'epoch_2.pth'))


def kd_model(trained: dict, **overrides) -> dict:
    """A SingleTeacherDistiller dict: tiny student, the trained tiny teacher, KD on logits."""
    model = dict(
        type='SingleTeacherDistiller',
        student=tiny_classifier(depth=8, widths=STUDENT_WIDTHS),
        teacher=dict(trained['model'], checkpoint=trained['checkpoint']),
        recorders=dict(logits=dict(type='ModuleOutputs', source='head.fc')),
        losses=dict(loss_kd=dict(type='KDLoss', student='logits', teacher='logits', tau=4,
                                 loss_weight=0.9)),
        dry_run_shape=(1, 28, 28))
    model.update(overrides)
    return model


def build_both(model: dict, setting: str) -> tuple:
    """The distiller ``model`` with ``setting=True`` and with ``setting=False``,
    each built from seed 0 (so that both hold the same weights)."""
    import torch

    from mmkd.registry import MODELS
    built = []
    for value in (True, False):
        torch.manual_seed(0)
        built.append(MODELS.build(dict(model, **{setting: value})))
    return tuple(built)


def with_one_box(samples: list) -> list:
    """Detection data samples, each given one ground-truth box (class 3)."""
    import torch
    from mmengine.structures import InstanceData
    for sample in samples:
        sample.gt_instances = InstanceData(bboxes=torch.tensor([[10., 10., 60., 70.]]),
                                           labels=torch.tensor([3]))
    return samples


def free_port() -> int:
    """A TCP port free on this machine now (for a torch.distributed rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def dist_train(cfg: dict, config_path: str, timeout: int = 900,
               python_path: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Dump ``cfg`` to ``config_path`` and train it with two CPU processes
    through ``tools/dist_train.sh`` (gloo, one thread each); ``python_path``
    goes before the inherited ``PYTHONPATH`` (test helpers a config imports)."""
    from mmengine.config import Config
    Config(cfg).dump(config_path)
    return subprocess.run(['bash', osp.join(REPO, 'tools', 'dist_train.sh'), config_path, '2'],
                          cwd=REPO, env=_dist_env(python_path), capture_output=True, text=True,
                          timeout=timeout)


def _dist_env(python_path: Sequence[str] = ()) -> dict:
    """The environment of two CPU worker processes: a free port, one thread
    each, and every thread's Python stack printed if a worker crashes."""
    paths = [*python_path, os.environ.get('PYTHONPATH', '')]
    return dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1',
                PYTHONFAULTHANDLER='1', PYTHONPATH=os.pathsep.join(p for p in paths if p))


def dist_run(tool: str, args: Sequence[str], timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ``tools/<tool>`` with ``args`` in two CPU processes under torchrun
    (``--launcher pytorch`` added)."""
    env = _dist_env()
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
               f'--master_port={env["PORT"]}', osp.join(REPO, 'tools', tool), *args,
               '--launcher', 'pytorch']
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def run_failure(result: subprocess.CompletedProcess) -> str:
    """What a failed subprocess printed: the end of its output and of its errors."""
    return (f'exit code {result.returncode}\n--- stdout (end) ---\n{result.stdout[-3000:]}'
            f'\n--- stderr (end) ---\n{result.stderr[-8000:]}')
