"""Fashion-MNIST preparation and safe checkpoint loading."""
import gzip
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader, load_checkpoint

from mmkd.utils import UnsafeCheckpointError, safe_torch_load


def test_prepared_data_is_read_by_mmpretrain(fashion_mnist_root):
    from mmpretrain.datasets import FashionMNIST
    train = FashionMNIST(data_root=fashion_mnist_root, split='train', download=False)
    test = FashionMNIST(data_root=fashion_mnist_root, split='test', test_mode=True,
                        download=False)
    assert (len(train), len(test)) == (60000, 10000)
    item = train.get_data_info(0)
    assert item['img'].shape == (28, 28) and 0 <= int(item['gt_label']) < 10
    labels = np.array([int(test.get_data_info(i)['gt_label']) for i in range(len(test))])
    assert np.bincount(labels).tolist() == [1000] * 10  # the test set is balanced


def test_prepare_names_the_fix_when_files_are_missing(tmp_path):
    from prepare_fashion_mnist import prepare
    with pytest.raises(FileNotFoundError, match='apt-get install dataset-fashion-mnist'):
        prepare(str(tmp_path / 'out'), source_dir=str(tmp_path), allow_apt=False)


def test_prepare_rejects_a_truncated_file(tmp_path, fashion_mnist_root):
    from prepare_fashion_mnist import FILES, prepare
    src = tmp_path / 'src'
    src.mkdir()
    for name in FILES:
        with open(osp.join(fashion_mnist_root, name), 'rb') as f:
            data = f.read()
        if name.startswith('t10k-labels'):
            data = data[:100]
        with gzip.open(src / f'{name}.gz', 'wb') as f:
            f.write(data)
    with pytest.raises(ValueError, match='t10k-labels-idx1-ubyte'):
        prepare(str(tmp_path / 'out'), source_dir=str(src), allow_apt=False)


def test_mmengine_types_load_with_weights_only(tmp_path):
    buf = HistoryBuffer()
    buf.update(0.5)
    ckpt = {'state_dict': {'w': torch.ones(2)},
            'message_hub': {'log_scalars': {'train/loss': buf}},
            'meta': {'seed': np.int64(3), 'lr': np.float64(0.1), 'arr': np.arange(3)}}
    path = str(tmp_path / 'ok.pth')
    torch.save(ckpt, path)
    loaded = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert loaded['message_hub']['log_scalars']['train/loss'].current() == 0.5
    assert loaded['meta']['seed'] == 3


class Payload:
    """Pickles as a call that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_checkpoint_with_an_unexpected_object_is_refused(tmp_path):
    marker = str(tmp_path / 'pwned')
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'payload': Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match='builtins.open|io.open'):
        safe_torch_load(path)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(torch.nn.Linear(1, 1), path)
    assert not os.path.exists(marker), 'the pickled call ran'


def test_restricted_getattr_refuses_other_attributes(tmp_path):
    class Sneaky:
        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    path = str(tmp_path / 'sneaky.pth')
    torch.save({'x': Sneaky()}, path)
    with pytest.raises(UnsafeCheckpointError):
        safe_torch_load(path)
