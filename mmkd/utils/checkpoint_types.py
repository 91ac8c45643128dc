"""Plain-data stand-ins for the non-tensor objects MMEngine writes into checkpoints.

An MMEngine checkpoint holds, besides tensors, the message hub's
``HistoryBuffer`` objects and numpy arrays and scalars. Unpickling them with
their real classes means calling numpy and MMEngine code with arguments a
file chooses (a ``HistoryBuffer`` built with an object whose
``__array_interface__`` points anywhere makes numpy read that memory). So
the unpickler never sees those classes: their names in a checkpoint resolve
to the inert stand-ins below, which only store what the file holds. After
loading, :func:`rebuild` validates that plain data (numeric dtypes only,
shapes that match the bytes, known keys) and builds the real objects from
it. Anything else is refused with :class:`UnsafeCheckpointError`.
"""
import math
import pickle
import re
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
from mmengine.logging import HistoryBuffer


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled object outside what MMEngine checkpoints contain."""


#: numpy dtype codes a checkpoint may use: bool, signed / unsigned int, float, complex.
_NUMERIC_CODE = re.compile(r'^[<>|=]?[biufc][1-9][0-9]?$')
#: Statistics of a HistoryBuffer that exist in every process.
_BUILTIN_STATISTICS = frozenset({'min', 'max', 'mean', 'current'})
#: Types a mapping key (or set item) may have.
_PLAIN_KEYS = (str, bytes, int, float, bool, type(None))
#: Deeper nesting than any checkpoint MMEngine writes is refused (and cannot exhaust the stack).
MAX_DEPTH = 200
#: Keys of a HistoryBuffer's pickled state.
_HISTORY_KEYS = frozenset({'max_length', '_log_history', '_count_history', 'statistics_methods'})


def _refuse(what: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(f'refused: {what}')


class _DType:
    """Stands for ``numpy.dtype``: numeric dtypes only."""

    dtype = None  # a file can create the object without calling __init__ (NEWOBJ)

    def __init__(self, code: Any, align: Any = False, copy: Any = True):
        if not isinstance(code, str) or not _NUMERIC_CODE.match(code) or not isinstance(
                align, bool) or not isinstance(copy, bool):
            raise _refuse(f'numpy dtype {code!r} (only numeric dtypes are read from a '
                          'checkpoint)')
        try:
            self.dtype = np.dtype(code)
        except TypeError as err:  # e.g. 'u3': no such size
            raise _refuse(f'numpy dtype {code!r} ({err})') from None

    def __setstate__(self, state: Any) -> None:
        # (version, byte order, subarray, names, fields, itemsize, alignment, flags)
        if not (isinstance(state, tuple) and len(state) == 8 and self.dtype is not None
                and isinstance(state[1], str) and state[1] in ('<', '>', '|', '=')
                and state[2] is None and state[3] is None and state[4] is None):
            raise _refuse(f'numpy dtype state {state!r} (structured or sub-array dtypes are '
                          'not read from a checkpoint)')
        if state[1] == '>':
            self.dtype = self.dtype.newbyteorder('>')


def _checked_dtype(value: Any) -> np.dtype:
    if not isinstance(value, _DType) or value.dtype is None:
        raise _refuse(f'a numpy value whose dtype is a {type(value).__name__}')
    return value.dtype


class _NDArrayClass:
    """Stands for the ``numpy.ndarray`` class, which only ``_reconstruct`` may name."""

    def __new__(cls, *args, **kwargs):
        raise _refuse('a checkpoint may not call numpy.ndarray(...)')


class _Array:
    """Stands for a numpy array until :func:`rebuild` makes it one."""

    value = None  # filled by __setstate__ only

    def __setstate__(self, state: Any) -> None:
        # (version, shape, dtype, Fortran order, raw bytes)
        if not (isinstance(state, tuple) and len(state) == 5):
            raise _refuse(f'numpy array state of type {type(state).__name__}')
        _, shape, dtype, fortran, data = state
        dtype = _checked_dtype(dtype)
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise _refuse(f'numpy array shape {shape!r}')
        if not isinstance(data, (bytes, bytearray)) or not isinstance(fortran, bool):
            raise _refuse('numpy array data that is not raw bytes')
        count = math.prod(shape)
        if len(data) != count * dtype.itemsize:
            raise _refuse(f'numpy array of shape {shape} and dtype {dtype} with {len(data)} '
                          'bytes of data')
        flat = np.frombuffer(bytes(data), dtype=dtype, count=count)
        self.value = flat.reshape(shape, order='F' if fortran else 'C').copy()


def _reconstruct(cls: Any, shape: Any, dtype_code: Any) -> _Array:
    """Stands for ``numpy.core.multiarray._reconstruct``."""
    if cls is not _NDArrayClass:
        raise _refuse(f'numpy _reconstruct of {cls!r}')
    return _Array()


def _scalar(dtype: Any, data: Any = None) -> Any:
    """Stands for ``numpy.core.multiarray.scalar``: a numeric numpy scalar."""
    dtype = _checked_dtype(dtype)
    if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
        raise _refuse(f'numpy scalar of dtype {dtype} from {type(data).__name__} data')
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


class _HistoryBuffer:
    """Stands for MMEngine's ``HistoryBuffer``: keeps its pickled state, runs nothing."""

    state = None

    def __init__(self, *args, **kwargs):
        raise _refuse('a checkpoint may not call HistoryBuffer(...); MMEngine pickles its '
                      'state only')

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Statistic:
    """Stands for ``getattr(HistoryBuffer, name)``: the name of a statistics method."""

    def __init__(self, name: str):
        self.name = name


def _getattr(obj: Any, name: Any) -> _Statistic:
    """Stands for ``builtins.getattr``: only a HistoryBuffer's statistics, by name."""
    if obj is _HistoryBuffer and isinstance(name, str) and name in _known_statistics():
        return _Statistic(name)
    raise _refuse(f'getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r})')


def _known_statistics() -> frozenset:
    return _BUILTIN_STATISTICS | frozenset(HistoryBuffer._statistics_methods)


def stand_in_globals() -> List[Tuple[Callable, str]]:
    """``(stand-in, pickled name)`` pairs for ``torch.serialization.safe_globals``."""
    pairs = [(_Array, f'{__name__}._Array'),  # built by _reconstruct, filled by BUILD
             (_HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
             (_getattr, 'builtins.getattr'), (_getattr, '__builtin__.getattr'),
             (_DType, 'numpy.dtype'), (_NDArrayClass, 'numpy.ndarray')]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        pairs += [(_reconstruct, f'{module}._reconstruct'), (_scalar, f'{module}.scalar')]
    return pairs


#: Pickled names that resolve to stand-ins (they are not "unsafe" in a refusal message).
STAND_IN_NAMES = frozenset(name for _, name in stand_in_globals())


def _history_buffer(stand_in: _HistoryBuffer, rebuilt: Callable[[Any], Any]) -> HistoryBuffer:
    state = getattr(stand_in, 'state', None)
    if not isinstance(state, dict) or not set(state) <= _HISTORY_KEYS:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise _refuse(f'HistoryBuffer state {keys}')
    max_length = state.get('max_length', 1000000)
    if type(max_length) is not int or max_length < 1:
        raise _refuse(f'HistoryBuffer max_length {max_length!r}')
    arrays = []
    for key in ('_log_history', '_count_history'):
        value = rebuilt(state.get(key, np.zeros(0)))
        if not (isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in 'biuf'):
            raise _refuse(f'HistoryBuffer {key} that is not a 1-d numeric array')
        arrays.append(value)
    if len(arrays[0]) != len(arrays[1]):
        raise _refuse('HistoryBuffer histories of different lengths')
    methods = state.get('statistics_methods', {})
    if not isinstance(methods, dict) or not all(
            isinstance(m, _Statistic) and m.name == k for k, m in methods.items()):
        raise _refuse('HistoryBuffer statistics methods other than its own')
    buffer = HistoryBuffer(max_length=max_length)  # no unpickled value reaches a constructor
    buffer._log_history, buffer._count_history = arrays
    return buffer


def rebuild(obj: Any) -> Any:
    """Replace the stand-ins in a loaded checkpoint by validated real objects.

    Containers are updated in place (a state dict keeps its ``_metadata``);
    shared and cyclic references are visited once.

    Raises:
        UnsafeCheckpointError: a stand-in holds something other than the
            plain data MMEngine writes.
    """
    done: Dict[int, Any] = {}
    depth = [0]

    def visit_key(value: Any) -> Any:
        if isinstance(value, _PLAIN_KEYS) or (
                isinstance(value, tuple) and all(isinstance(v, _PLAIN_KEYS) for v in value)):
            return value
        raise _refuse(f'a mapping key of type {type(value).__name__}')

    def visit(value: Any) -> Any:
        if isinstance(value, (str, bytes, int, float, bool, type(None))):
            return value
        key = id(value)
        if key in done:
            return done[key]
        depth[0] += 1
        try:
            if depth[0] > MAX_DEPTH:
                raise _refuse(f'containers nested deeper than {MAX_DEPTH} levels')
            return _visit_new(value, key)
        finally:
            depth[0] -= 1

    def _visit_new(value: Any, key: int) -> Any:
        if isinstance(value, _Array):
            if value.value is None:
                raise _refuse('a numpy array without data')
            done[key] = value.value
        elif isinstance(value, _HistoryBuffer):
            done[key] = _history_buffer(value, visit)
        elif isinstance(value, (_DType, _Statistic)):
            raise _refuse(f'a bare {type(value).__name__.strip("_")} outside a HistoryBuffer '
                          'or numpy value')
        elif isinstance(value, dict):
            done[key] = value
            attributes = dict(getattr(value, '__dict__', {}))
            if set(attributes) - {'_metadata'}:
                raise _refuse(f'attributes {sorted(attributes)} on a {type(value).__name__}')
            if '_metadata' in attributes:  # a state dict's versions: plain data only
                if not isinstance(attributes['_metadata'], dict):
                    raise _refuse('a state dict _metadata that is not a mapping')
                value._metadata = visit(attributes['_metadata'])
            for k in list(value):
                value[visit_key(k)] = visit(value[k])
        elif isinstance(value, list):
            done[key] = value
            value[:] = [visit(v) for v in value]
        elif isinstance(value, tuple):
            done[key] = tuple(visit(v) for v in value)
        elif isinstance(value, (set, frozenset)):
            done[key] = type(value)(visit_key(v) for v in value)
        else:  # tensors, torch dtypes, devices...: what torch's unpickler allows itself
            done[key] = value
        return done[key]

    return visit(obj)
