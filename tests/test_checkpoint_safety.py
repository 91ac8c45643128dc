"""Checkpoints from any source run no code, corrupt no memory, and broken files say so."""
import copyreg
import os
import os.path as osp
import subprocess
import sys
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import (
    CheckpointLoader,
    get_external_models,
    get_mmcls_models,
    get_torchvision_models,
    load_checkpoint,
)

from mmkd.distillers import load_teacher_checkpoint
from mmkd.registry import MODELS
from mmkd.utils import CorruptCheckpointError, UnsafeCheckpointError, safe_torch_load

from conftest import REPO, runner_cfg, tiny_classifier


class Payload:
    """Pickles as a call that creates a file when unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def evil_checkpoint(path: str, marker: str) -> None:
    net = MODELS.build(tiny_classifier())
    torch.save({'state_dict': net.state_dict(), 'meta': {'payload': Payload(marker)}}, path)


def good_checkpoint(path: str) -> dict:
    net = MODELS.build(tiny_classifier())
    buf = HistoryBuffer()
    buf.update(0.25)
    torch.save({'state_dict': net.state_dict(), 'meta': {'seed': np.int64(3)},
                'message_hub': {'log_scalars': {'train/loss': buf}}}, path)
    return net.state_dict()


def _first_http(models: dict) -> tuple:
    return next((k, v) for k, v in models.items() if v.startswith('http'))


def _schemes():
    tv = 'resnet18'
    ext, ext_url = _first_http(get_external_models())
    cls, cls_url = _first_http(get_mmcls_models())
    return [('https://example.invalid/ckpts/teacher.pth', 'https://example.invalid/ckpts/teacher.pth'),
            ('http://example.invalid/student.pth', 'http://example.invalid/student.pth'),
            (f'torchvision://{tv}', get_torchvision_models()[tv]),
            (f'modelzoo://{tv}', get_torchvision_models()[tv]),
            (f'open-mmlab://{ext}', ext_url),
            (f'openmmlab://{ext}', ext_url),
            (f'mmcls://{cls}', cls_url)]


def download_target(url: str) -> str:
    """Where torch.hub puts (and finds) the download of ``url``."""
    return osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(urlparse(url).path))


@pytest.mark.parametrize('name, url', _schemes(), ids=[s[0].split(':')[0] for s in _schemes()])
def test_every_scheme_refuses_a_payload_where_its_download_lands(name, url, tmp_path,
                                                                  monkeypatch, tiny_teacher):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))  # no network: the cache
    target = download_target(url)
    os.makedirs(osp.dirname(target))
    marker = str(tmp_path / 'pwned')
    evil_checkpoint(target, marker)
    with pytest.raises(UnsafeCheckpointError, match='io.open'):
        CheckpointLoader.load_checkpoint(name, map_location='cpu')
    with pytest.raises(UnsafeCheckpointError):  # init_cfg=dict(type='Pretrained'), load_from
        load_checkpoint(MODELS.build(tiny_classifier()), name, map_location='cpu')
    with pytest.raises(UnsafeCheckpointError):  # a teacher's checkpoint
        load_teacher_checkpoint(MODELS.build(tiny_classifier()), name)
    assert not osp.exists(marker), 'the pickled call ran'
    # The same place with a real checkpoint loads: the scheme works, safely.
    expected = good_checkpoint(target)
    loaded = CheckpointLoader.load_checkpoint(name, map_location='cpu')
    if name.startswith('mmcls://'):  # mmengine keeps an mmcls backbone, without its prefix
        got = {f'backbone.{k}': v for k, v in loaded['state_dict'].items()}
        assert got and all(torch.equal(v, expected[k]) for k, v in got.items())
    else:
        assert all(torch.equal(loaded['state_dict'][k], v) for k, v in expected.items())
        assert loaded['message_hub']['log_scalars']['train/loss'].current() == 0.25


def test_resume_and_test_tool_refuse_a_url_payload(tmp_path, fashion_mnist_root):
    torch_home = str(tmp_path / 'torch_home')
    url = 'https://example.invalid/run/epoch_1.pth'
    target = osp.join(torch_home, 'hub', 'checkpoints', 'epoch_1.pth')
    os.makedirs(osp.dirname(target))
    marker = str(tmp_path / 'pwned')
    evil_checkpoint(target, marker)
    cfg = runner_cfg(str(tmp_path / 'run'), fashion_mnist_root, tiny_classifier(), epochs=1,
                     train_samples=32, val_samples=32)
    config = str(tmp_path / 'cfg.py')
    Config(cfg).dump(config)
    env = dict(os.environ, TORCH_HOME=torch_home, OMP_NUM_THREADS='1')
    for tool, args in (('train.py', [config, '--resume', url]), ('test.py', [config, url])):
        done = subprocess.run([sys.executable, osp.join(REPO, 'tools', tool), *args], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and 'UnsafeCheckpointError' in done.stderr, done.stderr[-2000:]
        assert 'Refusing to load' in done.stderr and 'io.open' in done.stderr
    assert not osp.exists(marker), 'the pickled call ran'


class _ArrayInterface:
    """An object that numpy would read memory through (address 8), if it got it: pickled
    as a HistoryBuffer instance whose state sets ``__array_interface__``."""

    @property
    def __class__(self):  # what the pickler checks against the class it writes
        return HistoryBuffer

    def __reduce__(self):
        state = {'__array_interface__': {'data': (8, False), 'shape': (1 << 20, ),
                                         'typestr': '<f8', 'version': 3},
                 'statistics_methods': {}}
        return (copyreg.__newobj__, (HistoryBuffer, ), state)


class _CallHistoryBuffer:
    """Pickles as ``HistoryBuffer([evil], [evil])``: its __init__ runs np.array on them."""

    def __reduce__(self):
        evil = _ArrayInterface()
        return (HistoryBuffer, ([evil], [evil]))


CRASH_PROBE = r'''
import sys
sys.path.insert(0, {tests!r})
import torch
import mmkd
from mmengine.runner.checkpoint import CheckpointLoader
from mmkd.distillers import load_teacher_checkpoint
from mmkd.registry import MODELS
from mmkd.utils import UnsafeCheckpointError, register_all_modules
from conftest import tiny_classifier
register_all_modules(False)
sys.path.insert(0, {tools!r})
from export_student import export_student
path = {path!r}
entry_points = dict(
    load=lambda: CheckpointLoader.load_checkpoint(path, map_location='cpu'),
    teacher=lambda: load_teacher_checkpoint(MODELS.build(tiny_classifier()), path),
    export=lambda: export_student(path, path + '.out'))
for name, call in entry_points.items():
    try:
        call()
    except UnsafeCheckpointError as err:
        print(name, 'refused:', str(err).splitlines()[0][:300])
    else:
        print(name, 'LOADED')
'''


def test_a_history_buffer_built_from_file_data_is_refused_without_a_crash(tmp_path):
    path = str(tmp_path / 'array_interface.pth')
    torch.save({'state_dict': {}, 'message_hub': {'log_scalars': {'x': _CallHistoryBuffer()}}},
               path)
    probe = CRASH_PROBE.format(tests=osp.join(REPO, 'tests'),
                               tools=osp.join(REPO, 'tools', 'model_converters'), path=path)
    done = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert done.returncode == 0, f'the loader died ({done.returncode}): {done.stderr[-2000:]}'
    lines = [line for line in done.stdout.splitlines()
             if line.startswith(('load ', 'teacher ', 'export '))]
    assert [line.split()[0] for line in lines] == ['load', 'teacher', 'export'], done.stdout
    assert all('refused' in line and 'HistoryBuffer(...)' in line for line in lines), lines


@pytest.mark.parametrize('value, message', [
    (np.array([1, 'a'], dtype=object), 'numpy dtype'),
    (np.zeros(2, dtype=[('a', 'f4'), ('b', 'i4')]), 'numpy dtype'),
    (np.array(['text']), 'numpy dtype'),
])
def test_numpy_values_other_than_numeric_are_refused(tmp_path, value, message):
    path = str(tmp_path / 'numpy.pth')
    torch.save({'meta': {'value': value}}, path)
    with pytest.raises(UnsafeCheckpointError, match=message):
        safe_torch_load(path)


def test_history_buffers_and_numpy_values_come_back_as_they_were(tmp_path):
    buf = HistoryBuffer(max_length=5)
    for v in (1.0, 2.0, 4.0):
        buf.update(v, count=2)
    meta = {'seed': np.int64(7), 'lr': np.float32(0.5), 'arr': np.arange(6).reshape(2, 3).T,
            'flag': np.bool_(True), 'big_endian': np.arange(3, dtype='>f8')}
    path = str(tmp_path / 'ok.pth')
    torch.save({'message_hub': {'log_scalars': {'train/loss': buf}}, 'meta': meta}, path)
    loaded = safe_torch_load(path)
    again = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(again, HistoryBuffer) and again.max_length == 5
    assert again.mean() == buf.mean() and again.current() == 4.0 and again.statistics('max') == 4
    np.testing.assert_array_equal(again._count_history, buf._count_history)
    for key, value in meta.items():
        assert type(loaded['meta'][key]) is type(value), key
        np.testing.assert_array_equal(loaded['meta'][key], value)
        assert np.asarray(loaded['meta'][key]).dtype == np.asarray(value).dtype, key


def test_broken_files_are_called_broken_with_their_size(tmp_path):
    good = str(tmp_path / 'good.pth')
    good_checkpoint(good)
    data = open(good, 'rb').read()
    truncated = str(tmp_path / 'truncated.pth')
    with open(truncated, 'wb') as f:
        f.write(data[:len(data) // 2])
    empty = str(tmp_path / 'empty.pth')
    open(empty, 'wb').close()
    text = str(tmp_path / 'notes.pth')
    with open(text, 'w') as f:
        f.write('not a checkpoint\n')
    cases = [(truncated, rf'corrupt or truncated \({len(data) // 2} bytes\)'),
             (empty, r'empty \(0 bytes\)'), (text, r'not a torch checkpoint \(17 bytes')]
    for path, message in cases:
        for load in (safe_torch_load,
                     lambda p: CheckpointLoader.load_checkpoint(p, map_location='cpu')):
            with pytest.raises(CorruptCheckpointError, match=message):
                load(path)


def test_a_refusal_names_the_types_and_never_advises_turning_safety_off(tmp_path):
    path = str(tmp_path / 'evil.pth')
    evil_checkpoint(path, str(tmp_path / 'pwned'))
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_torch_load(path)
    message = str(info.value)
    assert 'io.open' in message and 'convert_trusted_checkpoint.py' in message
    assert 'weights_only' not in message


def test_a_trusted_file_is_converted_once_and_then_loads_safely(tmp_path):
    tool = osp.join(REPO, 'tools', 'model_converters', 'convert_trusted_checkpoint.py')
    src, dst = str(tmp_path / 'trusted.pth'), str(tmp_path / 'converted.pth')
    net = MODELS.build(tiny_classifier())
    torch.save({'state_dict': net.state_dict(), 'meta': {'epoch': 3, 'path': tmp_path}}, src)
    with pytest.raises(UnsafeCheckpointError, match='pathlib'):
        safe_torch_load(src)
    refused = subprocess.run([sys.executable, tool, src, dst], capture_output=True, text=True)
    assert refused.returncode != 0 and '--i-trust-this-file' in refused.stderr
    done = subprocess.run([sys.executable, tool, src, dst, '--i-trust-this-file'],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "dropped checkpoint['meta']['path']: pathlib" in done.stderr
    loaded = safe_torch_load(dst)
    assert loaded['meta'] == {'epoch': 3}
    assert all(torch.equal(loaded['state_dict'][k], v) for k, v in net.state_dict().items())


# ------------------------------------------------------------------ crafted pickles
class _AsHistoryBuffer:
    """Pickles as a HistoryBuffer built by NEWOBJ + BUILD (its state chosen here)."""

    def __init__(self, state):
        self.state = state

    @property
    def __class__(self):  # what the pickler checks against the class it writes
        return HistoryBuffer

    def __hash__(self):
        return 1

    def __reduce__(self):
        return (copyreg.__newobj__, (HistoryBuffer, ), self.state)


class _BareDtype:
    """Pickles as ``numpy.dtype.__new__(numpy.dtype)``: a dtype object without arguments."""

    @property
    def __class__(self):
        return np.dtype

    def __reduce__(self):
        return (copyreg.__newobj__, (np.dtype, ))


class _ScalarOfBareDtype:

    def __reduce__(self):
        core = getattr(np, '_core', None) or np.core
        return (core.multiarray.scalar, (_BareDtype(), b'\x00' * 8))


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _with_attribute():
    from collections import OrderedDict
    state = OrderedDict(w=torch.ones(1))
    state.payload = 'an attribute no state dict has'
    return state


@pytest.mark.parametrize('content, message', [
    ({'log': {_AsHistoryBuffer({'max_length': 3}): 1}}, 'mapping key'),
    ({'meta': _ScalarOfBareDtype()}, 'dtype'),
    ({'meta': _nested(400)}, 'nested deeper'),
    ({'state_dict': _with_attribute()}, "attributes \\['payload'\\]"),
], ids=['stand-in as a key', 'dtype without arguments', 'deep nesting', 'state dict attribute'])
def test_crafted_structures_are_refused_not_crashed_on(tmp_path, content, message):
    path = str(tmp_path / 'crafted.pth')
    torch.save(content, path)
    with pytest.raises(UnsafeCheckpointError, match=message):
        safe_torch_load(path)
