"""Broken inputs and lost work: a broken teacher, truncated and copied checkpoints, outputs
that would overwrite, schedules shorter than the config's."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

from mmkd.distillers import load_config
from mmkd.distillers.teacher import NonFiniteTeacherError
from mmkd.engine import fit_schedule_to_epochs
from mmkd.engine.work_dir import check_requested_checkpoint, resume_checkpoint
from mmkd.registry import MODELS
from mmkd.utils import CorruptCheckpointError, UnsafeCheckpointError

from conftest import REPO, kd_model, runner_cfg, tiny_classifier

TRAIN = osp.join(REPO, 'tools', 'train.py')
#: A real config of the repository, shrunk to seconds on one thread.
SMALL = ['train_dataloader.dataset.indices=64', 'val_dataloader.dataset.indices=32',
         'test_dataloader.dataset.indices=32', 'train_dataloader.num_workers=0',
         'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
         'val_dataloader.persistent_workers=False', 'train_dataloader.batch_size=32',
         'custom_hooks=[]', 'randomness.seed=0']


def train(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TRAIN, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS='1'))


def truncate(path: str) -> int:
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 3])
    return len(data) // 3


# ------------------------------------------------------------------ a broken teacher
def test_a_teacher_with_nan_weights_fails_at_build_naming_teacher_and_record(tmp_path,
                                                                             tiny_teacher):
    ckpt = torch.load(tiny_teacher['checkpoint'], map_location='cpu', weights_only=False)
    ckpt['state_dict']['head.fc.weight'][0, 0] = float('nan')
    broken = str(tmp_path / 'broken.pth')
    torch.save({'state_dict': ckpt['state_dict']}, broken)
    model = kd_model(tiny_teacher, teacher=dict(tiny_teacher['model'], checkpoint=broken))
    with pytest.raises(NonFiniteTeacherError, match=r"teacher 'teacher': record 'logits'.*"
                                                    r'NaN or infinite.*broken.pth'):
        MODELS.build(model)


def test_a_teacher_that_overflows_stops_the_step(tiny_teacher):
    model = MODELS.build(kd_model(tiny_teacher)).train()
    x = torch.randn(4, 1, 28, 28)
    x[0, 0, 0, 0] = float('inf')
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    with pytest.raises(NonFiniteTeacherError, match="record 'logits' of shape \\(4, 10\\)"):
        model(x, samples, mode='loss')


def test_nested_records_are_checked_to_the_last_tensor():
    # Detection heads record lists of per-level tensors, some of them lists again.
    from mmkd.distillers.teacher import indexed_tensors
    record = [torch.zeros(2), [torch.zeros(1), torch.tensor([float('nan')])], {'cls': 1}]
    found = {index: tensor for index, tensor in indexed_tensors(record)}
    assert list(found) == ['0', '1, 0', '1, 1']
    assert not torch.isfinite(found['1, 1']).all()


# ------------------------------------------------------------------ resume
@pytest.fixture(scope='module')
def two_epochs(tmp_path_factory, fashion_mnist_root) -> str:
    """A finished 2-epoch run of a tiny classifier (a checkpoint per epoch)."""
    work_dir = str(tmp_path_factory.mktemp('two_epochs'))
    cfg = runner_cfg(work_dir, fashion_mnist_root, tiny_classifier(), epochs=2,
                     train_samples=64, val_samples=32)
    Runner.from_cfg(Config(cfg)).train()
    return work_dir


def test_resume_falls_back_on_the_newest_checkpoint_that_loads(tmp_path, two_epochs):
    work_dir = str(tmp_path / 'run')
    shutil.copytree(two_epochs, work_dir)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work_dir, 'epoch_2.pth'))
    size = truncate(osp.join(work_dir, 'epoch_2.pth'))
    chosen, notes = resume_checkpoint(work_dir)
    assert chosen == osp.join(work_dir, 'epoch_1.pth')
    assert f'corrupt or truncated ({size} bytes)' in notes[0] and 'epoch_1.pth' in notes[-1]
    with pytest.raises(CorruptCheckpointError, match=r'epoch_2.pth.*truncated.*that are '
                                                     r"intact: \['.*epoch_1.pth'\]"):
        check_requested_checkpoint(osp.join(work_dir, 'epoch_2.pth'))
    truncate(osp.join(work_dir, 'epoch_1.pth'))
    with pytest.raises(CorruptCheckpointError, match='no checkpoint of .* can be resumed'):
        resume_checkpoint(work_dir)


class _Payload:
    """Pickles as a call that would create a file when unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_resume_passes_over_an_unsafe_checkpoint_and_says_so(tmp_path, two_epochs):
    work_dir = str(tmp_path / 'run')
    shutil.copytree(two_epochs, work_dir)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work_dir, 'epoch_2.pth'))
    marker = str(tmp_path / 'pwned')
    torch.save({'state_dict': {}, 'payload': _Payload(marker)}, osp.join(work_dir, 'epoch_2.pth'))
    chosen, notes = resume_checkpoint(work_dir)
    assert chosen == osp.join(work_dir, 'epoch_1.pth')
    assert 'refused as unsafe' in notes[0] and 'epoch_1.pth' in notes[-1]
    # Asked for by name, it is refused as what it is.
    with pytest.raises(UnsafeCheckpointError):
        check_requested_checkpoint(osp.join(work_dir, 'epoch_2.pth'))
    assert not osp.exists(marker), 'the pickled call ran'


def test_a_copied_work_dir_resumes_from_its_own_files(tmp_path, two_epochs):
    copy = str(tmp_path / 'copy')
    shutil.copytree(two_epochs, copy)  # last_checkpoint still names the original dir
    with open(osp.join(copy, 'last_checkpoint')) as f:
        assert osp.dirname(f.read().strip()) == two_epochs
    chosen, notes = resume_checkpoint(copy)
    assert chosen == osp.join(copy, 'epoch_2.pth')
    assert 'another directory' in notes[0]
    assert resume_checkpoint(two_epochs) == (osp.join(two_epochs, 'epoch_2.pth'), [])


def test_train_resumes_past_a_truncated_checkpoint_and_says_so(tmp_path):
    work_dir = str(tmp_path / 'run')
    config = 'configs/baselines/resnet8_fashionmnist.py'
    first = train(config, '--work-dir', work_dir, '--cfg-options', *SMALL,
                  'train_cfg.max_epochs=2')
    assert first.returncode == 0, first.stderr[-3000:]
    truncate(osp.join(work_dir, 'epoch_2.pth'))
    resumed = train(config, '--work-dir', work_dir, '--resume', '--cfg-options', *SMALL,
                    'train_cfg.max_epochs=3')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert 'epoch_2.pth cannot be resumed' in log and 'resuming from' in log
    assert 'Epoch(train) [2]' in log  # epoch 2 trained again, from the end of epoch 1
    assert torch.load(osp.join(work_dir, 'epoch_3.pth'), weights_only=False)['meta']['epoch'] == 3


# ------------------------------------------------------------------ nothing overwritten
def test_a_fresh_run_does_not_overwrite_an_earlier_one(tmp_path):
    work_dir = str(tmp_path / 'run')
    config = 'configs/baselines/resnet8_fashionmnist.py'
    options = ['--cfg-options', *SMALL, 'train_cfg.max_epochs=2']
    assert train(config, '--work-dir', work_dir, *options).returncode == 0
    before = {n: os.path.getmtime(osp.join(work_dir, n)) for n in os.listdir(work_dir)
              if n.endswith('.pth')}
    again = train(config, '--work-dir', work_dir, '--cfg-options', *SMALL,
                  'train_cfg.max_epochs=1')
    assert again.returncode != 0
    assert 'holds an earlier run' in again.stderr and '--overwrite' in again.stderr
    assert before == {n: os.path.getmtime(osp.join(work_dir, n)) for n in before}
    replaced = train(config, '--work-dir', work_dir, '--overwrite', '--cfg-options', *SMALL,
                     'train_cfg.max_epochs=1')
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    left = sorted(n for n in os.listdir(work_dir) if n.endswith('.pth'))
    assert 'epoch_2.pth' not in left and 'epoch_1.pth' in left  # no stale epoch 2 beside it


def test_export_never_replaces_its_input_or_an_existing_file(tmp_path, two_epochs):
    sys.path.insert(0, osp.join(REPO, 'tools', 'model_converters'))
    from export_student import export_student
    tool = osp.join(REPO, 'tools', 'model_converters', 'export_student.py')
    # A distiller checkpoint to export (student. prefix).
    ckpt = torch.load(osp.join(two_epochs, 'epoch_1.pth'), weights_only=False)
    src = str(tmp_path / 'distilled.pth')
    torch.save({'state_dict': {f'student.{k}': v for k, v in ckpt['state_dict'].items()},
                'meta': {'epoch': 1}}, src)
    size = os.path.getsize(src)
    same = subprocess.run([sys.executable, tool, src, src], capture_output=True, text=True)
    assert same.returncode != 0 and 'is the input checkpoint' in same.stderr
    assert os.path.getsize(src) == size
    dst = str(tmp_path / 'student.pth')
    export_student(src, dst)
    with pytest.raises(ValueError, match='exists; pass --force'):
        export_student(src, dst)
    export_student(src, dst, force=True)


# ------------------------------------------------------------------ schedules
def test_the_schedule_follows_a_changed_number_of_epochs():
    cfg = load_config(osp.join(REPO, 'configs', 'baselines', 'resnet8_fashionmnist.py'))
    planned = cfg.train_cfg.max_epochs
    assert planned == 4
    short = Config(cfg.to_dict())
    short.merge_from_dict({'train_cfg.max_epochs': 1})
    notes = fit_schedule_to_epochs(short, planned)
    assert [s['type'] for s in short.param_scheduler] == ['LinearLR']
    assert 'CosineAnnealingLR' in notes[0] and 'dropped' in notes[0]
    longer = Config(cfg.to_dict())
    longer.merge_from_dict({'train_cfg.max_epochs': 9})
    fit_schedule_to_epochs(longer, planned)
    cosine = longer.param_scheduler[1]
    assert cosine['begin'] + cosine['T_max'] == 9  # decays to the new end, not beyond
    same = Config(cfg.to_dict())
    assert fit_schedule_to_epochs(same, planned) == [] and same.param_scheduler == \
        cfg.param_scheduler


def test_one_epoch_of_a_four_epoch_config_trains(tmp_path):
    done = train('configs/baselines/resnet8_fashionmnist.py', '--work-dir', str(tmp_path),
                 '--cfg-options', *SMALL, 'train_cfg.max_epochs=1')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'dropped' in done.stdout + done.stderr
    assert osp.isfile(osp.join(str(tmp_path), 'epoch_1.pth'))
