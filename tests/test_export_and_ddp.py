"""Exported students load in plain mmpretrain; DDP on two CPU processes."""
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import REPO, dist_train, free_port, kd_model, run_failure, runner_cfg

PLAIN_STUDENT = dict(
    _scope_='mmpretrain', type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, in_channels=1, stem_channels=8,
                  base_channels=8),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=64))


def test_exported_student_loads_in_plain_mmpretrain(tmp_path, fashion_mnist_root, tiny_teacher):
    model = kd_model(tiny_teacher, student=PLAIN_STUDENT,
                     connectors=dict(logits_s=dict(type='IdentityConnector',
                                                   input='student.logits')),
                     losses=dict(loss_kd=dict(type='KDLoss', student='logits_s',
                                              teacher='logits')))
    cfg = runner_cfg(str(tmp_path / 'run'), fashion_mnist_root, model, epochs=1)
    runner = Runner.from_cfg(Config(cfg))
    runner.train()
    src = osp.join(str(tmp_path / 'run'), 'epoch_1.pth')
    dst = str(tmp_path / 'student.pth')
    subprocess.run([sys.executable, osp.join(REPO, 'tools', 'model_converters',
                                             'export_student.py'), src, dst], check=True)

    x = torch.randn(5, 1, 28, 28)
    torch.save(x, tmp_path / 'x.pth')
    distiller = runner.model.eval()
    expected = distiller(x, mode='tensor')
    # A fresh interpreter that never imports mmkd, reading with weights_only.
    code = textwrap.dedent(f"""
        import sys, torch
        from mmengine.runner import load_checkpoint
        from mmpretrain.registry import MODELS
        from mmengine.registry import init_default_scope
        init_default_scope('mmpretrain')
        cfg = {{k: v for k, v in {PLAIN_STUDENT!r}.items() if k != '_scope_'}}
        net = MODELS.build(cfg).eval()
        ckpt = load_checkpoint(net, {dst!r}, map_location='cpu', strict=True)
        assert 'mmkd' not in sys.modules, 'mmkd was imported'
        assert ckpt['meta']['dataset_meta']['classes'][0] == 'T-shirt/top'
        with torch.no_grad():
            out = net(torch.load({str(tmp_path / 'x.pth')!r}), mode='tensor')
        torch.save(out, {str(tmp_path / 'out.pth')!r})
    """)
    env = dict(os.environ, PYTHONPATH='')
    subprocess.run([sys.executable, '-c', code], check=True, cwd=str(tmp_path), env=env)
    got = torch.load(tmp_path / 'out.pth')
    assert torch.allclose(got, expected, atol=1e-6)


def test_ddp_with_two_cpu_processes(tmp_path, fashion_mnist_root, tiny_teacher):
    cfg = runner_cfg(str(tmp_path / 'ddp'), fashion_mnist_root, kd_model(tiny_teacher),
                     epochs=1)
    cfg['model_wrapper_cfg'] = dict(type='MMDistributedDataParallel',
                                    find_unused_parameters=False)
    cfg['log_level'] = 'INFO'
    config = str(tmp_path / 'kd_ddp.py')
    result = dist_train(cfg, config, timeout=600)
    assert result.returncode == 0, run_failure(result)
    assert osp.isfile(tmp_path / 'ddp' / 'epoch_1.pth')
    log = open(next(osp.join(dp, f) for dp, _, fs in os.walk(tmp_path / 'ddp') for f in fs
                    if f.endswith('.log'))).read()
    assert 'loss_kd' in log
    assert 'Distributed training: True' in log
    # The workers leave through os._exit (no finalization): the log is complete anyway.
    assert 'The best checkpoint with' in log

    # tools/test.py evaluates the student and, once, the teacher.
    result = subprocess.run(
        [sys.executable, 'tools/test.py', config, str(tmp_path / 'ddp' / 'epoch_1.pth'),
         '--work-dir', str(tmp_path / 'test'), '--cfg-options', 'log_level=INFO'],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'teacher on the test set: teacher/accuracy/top1' in result.stdout
    assert 'Epoch(test)' in result.stdout and 'accuracy/top1' in result.stdout


WORKER = """
import logging, sys
import torch.distributed as dist
from mmkd.utils import exit_after_distributed_run, finish_distributed
logging.basicConfig(filename=sys.argv[1], level=logging.INFO)
if sys.argv[2] == 'distributed':
    dist.init_process_group('gloo', init_method='tcp://127.0.0.1:' + sys.argv[3], rank=0,
                            world_size=1)
    finish_distributed()
logging.info('last words')
print('to stdout', end='')
exit_after_distributed_run(3)
print(' and on')
"""


@pytest.mark.parametrize('distributed', [True, False])
def test_a_process_that_ended_a_distributed_run_exits_at_once_with_its_output_flushed(
        tmp_path, distributed):
    """Also under torchrun's variables: only the end of a distributed run makes it exit
    (a script run inside pytest, which sets LOCAL_RANK, must not end pytest)."""
    env = dict(os.environ, LOCAL_RANK='0', TORCHELASTIC_RUN_ID='x')
    log = tmp_path / 'worker.log'
    mode = 'distributed' if distributed else 'single'
    result = subprocess.run([sys.executable, '-c', WORKER, str(log), mode, str(free_port())],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert 'last words' in log.read_text(), result.stderr[-2000:]
    if distributed:
        assert (result.returncode, result.stdout) == (3, 'to stdout')
    else:
        assert (result.returncode, result.stdout) == (0, 'to stdout and on\n')
