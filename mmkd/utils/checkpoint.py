"""Safe checkpoint loading for MMEngine on torch >= 2.6.

MMEngine 0.10.7 writes checkpoints that hold a ``HistoryBuffer`` and numpy
values (the message hub); torch >= 2.6 reads with ``weights_only=True`` and
refuses them, so ``--resume`` fails. Instead of turning the check off, we
allow exactly the types MMEngine writes and keep refusing everything else.

The local-file scheme of MMEngine's :class:`CheckpointLoader` is replaced by
:func:`load_from_local`, so ``runner.resume``, ``load_from`` and
``load_checkpoint`` all read safely.
"""
import os.path as osp
import pickle
from typing import Any, Callable, List, Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled object outside the allow-list."""


# Registered by every HistoryBuffer's __init__, so a fresh process may not
# have them in HistoryBuffer._statistics_methods yet.
_BUILTIN_STATISTICS = frozenset({'min', 'max', 'mean', 'current'})


def _history_buffer_getattr(obj: Any, name: str) -> Callable:
    """``getattr`` restricted to what a pickled HistoryBuffer needs.

    A ``HistoryBuffer`` pickles its statistics methods as
    ``getattr(HistoryBuffer, 'mean')``; a general ``getattr`` would let a
    file reach any attribute of any allowed class.
    """
    allowed = _BUILTIN_STATISTICS | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise UnsafeCheckpointError(f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint')


def _numpy_globals() -> List[Any]:
    core = getattr(np, '_core', None) or np.core  # numpy 2 renamed np.core
    allowed = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype]
    # numpy >= 1.25 pickles dtypes through their classes (np.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for name in ('Float16DType', 'Float32DType', 'Float64DType', 'Int8DType', 'Int16DType',
                     'Int32DType', 'Int64DType', 'UInt8DType', 'UInt16DType', 'UInt32DType',
                     'UInt64DType', 'BoolDType', 'LongLongDType', 'ULongLongDType'):
            if hasattr(dtypes, name):
                allowed.append(getattr(dtypes, name))
    return allowed


def checkpoint_safe_globals() -> List[Any]:
    """The types MMEngine's checkpoints hold beyond tensors and containers."""
    return [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'), *_numpy_globals()]


def safe_torch_load(filename: str, map_location: Any = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` and MMEngine's types allowed.

    Raises:
        UnsafeCheckpointError: the file holds other pickled objects; the
            message names them.
    """
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
        except Exception:  # noqa: BLE001 - only used to improve the message
            names = []
        allowed = {'builtins.getattr', f'{HistoryBuffer.__module__}.HistoryBuffer'}
        offending = [n for n in names if n not in allowed and not n.startswith('numpy.')]
        what = ', '.join(offending) if offending else str(err).splitlines()[0]
        raise UnsafeCheckpointError(
            f'Refusing to load {filename}: it holds pickled objects outside the types '
            f'MMEngine writes ({what}). Unpickling them could run arbitrary code. If you '
            'trust this file, re-save just its tensors, e.g. torch.save({"state_dict": '
            'torch.load(path, weights_only=False)["state_dict"]}, new_path).') from err


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_from_local(filename: str, map_location: Optional[Any] = None) -> Any:
    """Local-file scheme of MMEngine's CheckpointLoader, read safely."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    return safe_torch_load(filename, map_location)


