"""A store of the teacher's outputs for each sample and view: teacher-free epochs.

Fast Knowledge Distillation (Shen and Xing, ECCV 2022) and ReLabel (Yun et al.,
CVPR 2021) run the teacher once, store its predictions for every sample (and,
in FKD, every random view of it), and train students later without the
teacher. :class:`TeacherCache` is that store for mmkd: memory-mapped arrays,
one row per ``(view epoch, sample index)`` (the view keys of
:mod:`mmkd.datasets.replay`), written by ``tools/cache_teacher.py`` or by the
first epochs of a run (:class:`~mmkd.engine.hooks.TeacherCacheHook`), read by
the distiller in place of running a teacher.

Layout of a cache directory::

    meta.json                      what wrote it (teacher, data, storage) and the shapes
    written.npy                    uint8 (view_epochs, samples): 1 once a row is stored
    <teacher>.<record>.npy         (view_epochs, samples, width) with every value, or
    <teacher>.<record>.topk.npy    (view_epochs, samples, k) the k largest values,
    <teacher>.<record>.index.npy   their class indices, and
    <teacher>.<record>.lse.npy     (view_epochs, samples) float32 log-sum-exp of all values

With ``topk=k`` a record of ``width > k`` values keeps its ``k`` largest
values ``v_j``, their indices, and ``L = log sum_c exp(z_c)``. Reading fills the
other ``width - k`` entries with one value ``t`` chosen so that the softmax at
temperature 1 is exact on the stored classes and the rest share the remaining
mass equally: ``t = L + log((1 - sum_j exp(v_j - L)) / (width - k))``.
"""
import hashlib
import json
import os
import os.path as osp
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as torch_dist

from mmkd.datasets.replay import VIEW_KEY

META_FILE = 'meta.json'
WRITTEN_FILE = 'written.npy'
FORMAT_VERSION = 1
STORAGE_DTYPES = ('float16', 'float32')


class TeacherCacheError(RuntimeError):
    """A cache that cannot serve this run (written for another teacher, data or layout)."""


def file_digest(path: str, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes (a teacher checkpoint)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def _is_distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def _rank() -> int:
    return torch_dist.get_rank() if _is_distributed() else 0


def teachers_of(fields: Iterable[str]) -> List[str]:
    """The teachers named by cache fields ``'<teacher>.<record>'``."""
    return sorted({field.split('.', 1)[0] for field in fields})


def _differences(stored: Any, wanted: Any, path: str = '') -> List[str]:
    """Where two JSON-like values differ, as ``path: stored -> wanted`` lines."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        lines = []
        for key in sorted(set(stored) | set(wanted)):
            where = f'{path}.{key}' if path else str(key)
            lines += _differences(stored.get(key), wanted.get(key), where)
        return lines
    if stored == wanted:
        return []

    def short(value):
        text = json.dumps(value)
        return text if len(text) <= 120 else text[:117] + '...'

    return [f'{path}: cache has {short(stored)}, this run has {short(wanted)}']


class TeacherCache:
    """Memory-mapped teacher outputs by view key ``(view epoch, sample index)``.

    Open (or create) one with :meth:`open`; :meth:`read` returns the stored
    values of a batch as tensors, :meth:`write` stores a batch. Each process
    of a distributed run writes the rows of its own samples; flags in
    ``written.npy`` say which rows hold values, so an interrupted run or
    ``tools/cache_teacher.py`` continues where it stopped.

    Args:
        directory: The cache's directory (holding ``meta.json``).
        meta: The cache's description, as in ``meta.json``.
        mode: ``'r+'`` (read and write) or ``'r'``.
    """

    def __init__(self, directory: str, meta: Mapping[str, Any], mode: str = 'r+'):
        self.directory = directory
        self.meta = dict(meta)
        self.view_epochs = int(meta['view_epochs'])
        self.num_samples = int(meta['samples'])
        self.widths: Dict[str, int] = {k: int(v) for k, v in meta['fields'].items()}
        self.dtype = meta['dtype']
        self.topk: Optional[int] = meta.get('topk')
        self.written = np.lib.format.open_memmap(osp.join(directory, WRITTEN_FILE), mode=mode)
        self._arrays = {field: {part: np.lib.format.open_memmap(self._path(field, part), mode=mode)
                                for part in self._parts(field)}
                        for field in self.widths}
        #: Rows read and written since the counters were last taken (:meth:`take_counts`).
        self.counts = {'read': 0, 'written': 0}

    @property
    def teachers(self) -> List[str]:
        """The names of the teachers whose records the cache holds."""
        return teachers_of(self.widths)

    # ------------------------------------------------------------------ layout
    def _truncated(self, field: str) -> bool:
        return self.topk is not None and self.widths[field] > self.topk

    def _parts(self, field: str) -> Tuple[str, ...]:
        return ('topk', 'index', 'lse') if self._truncated(field) else ('full',)

    def _path(self, field: str, part: str) -> str:
        suffix = '' if part == 'full' else f'.{part}'
        return osp.join(self.directory, f'{field}{suffix}.npy')

    @staticmethod
    def _part_specs(width: int, view_epochs: int, samples: int, dtype: str,
                    topk: Optional[int]) -> Dict[str, Tuple[tuple, Any]]:
        rows = (view_epochs, samples)
        if topk is None or width <= topk:
            return {'full': (rows + (width, ), dtype)}
        index_dtype = np.int16 if width <= np.iinfo(np.int16).max else np.int32
        return {'topk': (rows + (topk, ), dtype), 'index': (rows + (topk, ), index_dtype),
                'lse': (rows, np.float32)}

    @classmethod
    def bytes_per_row(cls, widths: Mapping[str, int], dtype: str = 'float16',
                      topk: Optional[int] = None) -> int:
        """Bytes stored per sample and view epoch for records of ``widths``
        (the flag byte included)."""
        total = 1
        for width in widths.values():
            for shape, part_dtype in cls._part_specs(width, 1, 1, dtype, topk).values():
                total += int(np.prod(shape)) * np.dtype(part_dtype).itemsize
        return total

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, directory: str, fingerprint: Mapping[str, Any], samples: int,
             view_epochs: int, widths: Mapping[str, int], dtype: str = 'float16',
             topk: Optional[int] = None) -> 'TeacherCache':
        """Open the cache in ``directory``, creating it if it does not exist.

        In a distributed run the first process creates it and the others wait
        for it. An existing cache written with another fingerprint (teacher
        checkpoint, records, data, views) or layout is refused with the
        differences listed.

        Args:
            directory: Where the cache lives.
            fingerprint: What the stored values depend on (JSON-able).
            samples: Samples in the dataset.
            view_epochs: Epochs of distinct views.
            widths: ``'<teacher>.<record>'`` -> values per sample.
            dtype: ``'float16'`` or ``'float32'``.
            topk: Keep only the ``topk`` largest values of wider records.
        """
        if dtype not in STORAGE_DTYPES:
            raise TeacherCacheError(f'teacher cache dtype {dtype!r}: use one of {STORAGE_DTYPES}.')
        if topk is not None and int(topk) < 1:
            raise TeacherCacheError(f'teacher cache topk must be at least 1; got {topk}.')
        meta = {'format': FORMAT_VERSION, 'fingerprint': json.loads(json.dumps(fingerprint)),
                'samples': int(samples), 'view_epochs': int(view_epochs),
                'fields': {k: int(v) for k, v in widths.items()}, 'dtype': dtype,
                'topk': None if topk is None else int(topk)}
        if _rank() == 0 and not osp.isfile(osp.join(directory, META_FILE)):
            cls._create(directory, meta)
        if _is_distributed():
            torch_dist.barrier()
        meta_path = osp.join(directory, META_FILE)
        with open(meta_path) as f:
            stored = json.load(f)
        differences = _differences(stored, meta)
        if differences:
            raise TeacherCacheError(
                f'the teacher cache in {directory} was written for another run:\n  '
                + '\n  '.join(differences)
                + f'\nDelete {directory} (or set teacher_cache.dir to another directory) to '
                'write a new cache for this run.')
        return cls(directory, stored)

    @classmethod
    def _create(cls, directory: str, meta: Mapping[str, Any]) -> None:
        os.makedirs(directory, exist_ok=True)
        rows = (meta['view_epochs'], meta['samples'])
        np.lib.format.open_memmap(osp.join(directory, WRITTEN_FILE), mode='w+', dtype=np.uint8,
                                  shape=rows).flush()
        for field, width in meta['fields'].items():
            for part, (shape, dtype) in cls._part_specs(width, *rows, meta['dtype'],
                                                         meta['topk']).items():
                suffix = '' if part == 'full' else f'.{part}'
                np.lib.format.open_memmap(osp.join(directory, f'{field}{suffix}.npy'),
                                          mode='w+', dtype=dtype, shape=shape).flush()
        # meta.json last: a directory with it holds every array.
        tmp = osp.join(directory, META_FILE + '.tmp')
        with open(tmp, 'w') as f:
            json.dump(meta, f, indent=1)
        os.replace(tmp, osp.join(directory, META_FILE))

    # ------------------------------------------------------------------ rows
    def _index(self, keys: Sequence[Tuple[int, int]]) -> Tuple[np.ndarray, np.ndarray]:
        keys = np.asarray(keys, dtype=np.int64).reshape(-1, 2)
        epochs, samples = keys[:, 0], keys[:, 1]
        if ((epochs < 0) | (epochs >= self.view_epochs) | (samples < 0)
                | (samples >= self.num_samples)).any():
            raise TeacherCacheError(
                f'view keys outside the cache ({self.view_epochs} view epochs x '
                f'{self.num_samples} samples): {keys.tolist()[:4]}...; the run and the cache '
                'disagree on the dataset or on view_epochs.')
        return epochs, samples

    def has(self, keys: Sequence[Tuple[int, int]]) -> bool:
        """Whether every row of ``keys`` holds values."""
        epochs, samples = self._index(keys)
        return bool(self.written[epochs, samples].all())

    def coverage(self) -> np.ndarray:
        """Fraction of rows written, per view epoch."""
        return np.asarray(self.written, dtype=np.float64).mean(axis=1)

    def read(self, field: str, keys: Sequence[Tuple[int, int]],
             device: Optional[torch.device] = None) -> torch.Tensor:
        """The stored values of ``field`` for ``keys``: a float32 ``(len(keys), width)``
        tensor (truncated records filled in as the module docstring says)."""
        epochs, samples = self._index(keys)
        parts = self._arrays[field]
        if not self._truncated(field):
            values = torch.from_numpy(np.asarray(parts['full'][epochs, samples], np.float32))
        else:
            top = torch.from_numpy(np.asarray(parts['topk'][epochs, samples], np.float32))
            index = torch.from_numpy(np.asarray(parts['index'][epochs, samples], np.int64))
            lse = torch.from_numpy(np.asarray(parts['lse'][epochs, samples], np.float32))
            kept = torch.exp(top - lse[:, None]).sum(1)
            rest = self.widths[field] - top.shape[1]
            tail = lse + torch.log((1 - kept).clamp_min(1e-12) / rest)
            values = tail[:, None].expand(-1, self.widths[field]).clone()
            values.scatter_(1, index, top)
        self.counts['read'] += len(samples)
        return values if device is None else values.to(device)

    def write(self, values: Mapping[str, torch.Tensor], keys: Sequence[Tuple[int, int]]) -> None:
        """Store a batch: ``values`` maps every field to its ``(len(keys), width)`` tensor."""
        epochs, samples = self._index(keys)
        missing = sorted(set(self.widths) - set(values))
        if missing:
            raise TeacherCacheError(f'teacher cache write without the field(s) {missing}.')
        for field, value in values.items():
            value = value.detach().float().reshape(len(samples), -1).cpu()
            if value.shape[1] != self.widths[field]:
                raise TeacherCacheError(
                    f'{field}: {value.shape[1]} values per sample, the cache holds '
                    f'{self.widths[field]}.')
            parts = self._arrays[field]
            if not self._truncated(field):
                parts['full'][epochs, samples] = value.numpy()
                continue
            top, index = value.topk(self.topk, dim=1)
            parts['topk'][epochs, samples] = top.numpy()
            parts['index'][epochs, samples] = index.numpy()
            parts['lse'][epochs, samples] = torch.logsumexp(value, dim=1).numpy()
        self.written[epochs, samples] = 1
        self.counts['written'] += len(samples)

    def flush(self) -> None:
        """Push the written rows to the files."""
        self.written.flush()
        for parts in self._arrays.values():
            for array in parts.values():
                array.flush()

    def take_counts(self) -> Dict[str, int]:
        """The rows read and written since the last call."""
        counts, self.counts = self.counts, {'read': 0, 'written': 0}
        return counts


def view_keys(data_samples: Optional[Iterable]) -> Optional[List[Tuple[int, int]]]:
    """The view key of every data sample of a batch, or ``None`` if one lacks it
    (a batch not loaded through :class:`~mmkd.datasets.ReplayDataset`)."""
    if data_samples is None:
        return None
    keys = []
    for sample in data_samples:
        key = sample.metainfo.get(VIEW_KEY) if hasattr(sample, 'metainfo') else None
        if key is None:
            return None
        keys.append((int(key[0]), int(key[1])))
    return keys
