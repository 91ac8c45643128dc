"""Checkpoints are read without running code from the file, whatever their source.

:func:`safe_torch_load` reads with ``torch.load(weights_only=True)``; the
non-tensor objects MMEngine writes (``HistoryBuffer``, numpy arrays and
scalars) resolve to inert stand-ins and are rebuilt from validated plain
data (:mod:`mmkd.utils.checkpoint_types`). Files that are not checkpoints
(empty, truncated, other formats) are told apart from refused ones.

Importing mmkd routes every scheme of MMEngine's :class:`CheckpointLoader`
through it: local files (:func:`load_from_local`) and every other scheme
(``https://``, ``torchvision://``, ``open-mmlab://``, ``mmcls://``, ``s3://``,
``pavi://`` and any a package registers later), whose loaders call
``torch.load`` themselves (torch.hub's with ``weights_only=False``): while a
scheme's loader runs, ``torch.load`` is :func:`safe_torch_load`. So resume,
``load_from``, ``init_cfg`` pretrained weights, ``tools/test.py`` and
teachers all load safely.
"""
import io
import os
import os.path as osp
import pickle
import threading
import zipfile
from contextlib import contextmanager
from typing import Any, BinaryIO, Iterator, List, Optional, Union

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint_types import STAND_IN_NAMES, UnsafeCheckpointError, rebuild, stand_in_globals

#: The real ``torch.load``, kept before any scheme loader runs under the guard.
_TORCH_LOAD = torch.load
#: Legacy (non-zip) torch files start with a pickled magic number: protocol 2 opcode.
_LEGACY_MAGIC = b'\x80'
#: Where converting a trusted file that holds other objects is explained.
CONVERT_TOOL = 'tools/model_converters/convert_trusted_checkpoint.py'

FileLike = Union[str, os.PathLike, BinaryIO]


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is empty, truncated or not a checkpoint at all."""


def _size(f: FileLike) -> int:
    if isinstance(f, (str, os.PathLike)):
        return osp.getsize(f)
    position = f.tell()
    size = f.seek(0, io.SEEK_END)
    f.seek(position)
    return size


def _head(f: FileLike, count: int = 4) -> bytes:
    if isinstance(f, (str, os.PathLike)):
        with open(f, 'rb') as handle:
            return handle.read(count)
    position = f.tell()
    head = f.read(count)
    f.seek(position)
    return head


def check_readable(f: FileLike, name: Optional[str] = None) -> None:
    """Refuse, before unpickling, what cannot be a torch checkpoint: an empty
    file, a truncated or corrupt zip, a file of another kind. Cheap (nothing
    is unpickled), so it can vet many files.

    Raises:
        CorruptCheckpointError: naming the file and what is wrong with it.
    """
    name = name or str(f)
    size = _size(f)
    if size == 0:
        raise CorruptCheckpointError(f'{name} is empty (0 bytes): not a checkpoint.')
    head = _head(f)
    if head.startswith(b'PK'):
        try:
            if isinstance(f, (str, os.PathLike)):
                zipfile.ZipFile(f).close()
            else:
                position = f.tell()
                zipfile.ZipFile(f).close()
                f.seek(position)
        except zipfile.BadZipFile as err:
            raise CorruptCheckpointError(
                f'{name} is corrupt or truncated ({size} bytes): {err}. Copy it again, or use '
                'an earlier checkpoint.') from err
    elif not head.startswith(_LEGACY_MAGIC):
        raise CorruptCheckpointError(
            f'{name} is not a torch checkpoint ({size} bytes, starting {head!r}): neither a '
            'zip archive (torch.save) nor a legacy torch file.')


def _refusal(f: FileLike, name: str, err: Exception) -> UnsafeCheckpointError:
    names: List[str] = []
    if isinstance(f, (str, os.PathLike)):
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(f)
        except Exception:  # noqa: BLE001 - only used to name what was refused
            names = []
    offending = [n for n in names if n not in STAND_IN_NAMES]
    if isinstance(err, UnsafeCheckpointError):
        what = str(err)
    elif offending:
        what = f'pickled objects of {", ".join(sorted(offending))}'
    else:  # the reason torch's unpickler gives, without its advice
        what = _unpickler_reason(str(err)) or type(err).__name__
    return UnsafeCheckpointError(
        f'Refusing to load {name}: {what}. A checkpoint from MMEngine holds tensors, numbers, '
        'strings, containers, numpy numbers and HistoryBuffer logs; anything else could run '
        'code when unpickled, so mmkd does not unpickle it. If you made this file yourself '
        f'and trust it, convert it once with python {CONVERT_TOOL} SRC DST, which keeps its '
        'tensors and plain data.')


def _unpickler_reason(message: str) -> str:
    """The reason in torch's weights-only message (the line after its marker)."""
    lines = [line.strip() for line in message.splitlines()]
    for i, line in enumerate(lines):
        if 'WeightsUnpickler error' in line:
            rest = line.split('WeightsUnpickler error:', 1)[-1].strip()
            following = [x for x in lines[i + 1:] if x]
            return rest or (following[0] if following else '')
    return ''


def safe_torch_load(f: FileLike, map_location: Any = 'cpu') -> Any:
    """Read a checkpoint without running code from it.

    Args:
        f: A path or a binary file object.
        map_location: As for ``torch.load``.

    Returns:
        The checkpoint, with MMEngine's ``HistoryBuffer`` and numpy values
        rebuilt from validated plain data.

    Raises:
        CorruptCheckpointError: the file is empty, truncated or not a
            checkpoint (the message gives its size).
        UnsafeCheckpointError: the file holds other pickled objects (the
            message names them and how to convert a trusted file).
    """
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else '<file object>'
    check_readable(f, name)
    try:
        with torch.serialization.safe_globals(stand_in_globals()):
            loaded = _TORCH_LOAD(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise _refusal(f, name, err) from None
    except (EOFError, zipfile.BadZipFile) as err:
        raise CorruptCheckpointError(f'{name} is corrupt or truncated ({_size(f)} bytes): '
                                     f'{err or type(err).__name__}.') from err
    except RuntimeError as err:
        if 'PytorchStreamReader' in str(err) or 'zip archive' in str(err):
            raise CorruptCheckpointError(f'{name} is corrupt or truncated ({_size(f)} bytes): '
                                         f'{str(err).splitlines()[0]}') from err
        raise _refusal(f, name, UnsafeCheckpointError(
            f'refused: unpickling failed ({str(err).splitlines()[0]})')) from None
    except Exception as err:  # noqa: BLE001 - whatever a crafted pickle provokes is a refusal
        raise _refusal(f, name, UnsafeCheckpointError(
            f'refused: unpickling failed ({type(err).__name__}: {err})')) from None
    try:
        return rebuild(loaded)
    except UnsafeCheckpointError as err:
        raise _refusal(f, name, err) from None
    except Exception as err:  # noqa: BLE001
        raise _refusal(f, name, UnsafeCheckpointError(
            f'refused: its content is not what MMEngine writes ({type(err).__name__}: '
            f'{err})')) from None


def _guarded_torch_load(f: FileLike, map_location: Any = None, *args, **kwargs) -> Any:
    """``torch.load`` as a scheme loader may call it: always :func:`safe_torch_load`
    (a request for ``weights_only=False`` included)."""
    return safe_torch_load(f, map_location)


_GUARD_LOCK = threading.RLock()
_guard_depth = 0


@contextmanager
def torch_load_is_safe() -> Iterator[None]:
    """Inside the block, ``torch.load`` reads every file with :func:`safe_torch_load`.

    Nested and concurrent blocks (threads) share one swap: the first to enter
    installs the guard, the last to leave restores ``torch.load``.
    """
    global _guard_depth
    with _GUARD_LOCK:
        if _guard_depth == 0:
            torch.load = _guarded_torch_load
        _guard_depth += 1
    try:
        yield
    finally:
        with _GUARD_LOCK:
            _guard_depth -= 1
            if _guard_depth == 0:
                torch.load = _TORCH_LOAD


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_from_local(filename: str, map_location: Any = None) -> Any:
    """Local-file scheme of MMEngine's CheckpointLoader, read safely."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    return safe_torch_load(filename, map_location)


_unguarded_load_checkpoint = CheckpointLoader.load_checkpoint.__func__


def _load_checkpoint_safely(cls, filename: str, map_location: Any = None,
                            logger: str = 'current') -> Any:
    """MMEngine's ``CheckpointLoader.load_checkpoint`` with every scheme's
    ``torch.load`` replaced by :func:`safe_torch_load`."""
    with torch_load_is_safe():
        return _unguarded_load_checkpoint(cls, filename, map_location, logger)


CheckpointLoader.load_checkpoint = classmethod(_load_checkpoint_safely)

__all__ = ['CorruptCheckpointError', 'UnsafeCheckpointError', 'load_from_local',
           'safe_torch_load', 'torch_load_is_safe']
