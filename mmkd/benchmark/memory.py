"""Peak memory of one call: CUDA allocator statistics, or CPU allocation events."""
import ctypes
import gc
import json
import os
import resource
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import torch


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc), so RSS starts low."""
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_bytes() -> Optional[int]:
    """Resident set size of this process, from /proc (Linux)."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        return None


class _RSSSampler(threading.Thread):
    """Reads the RSS every ``interval`` seconds and keeps the largest."""

    def __init__(self, interval: float = 0.0005):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = _rss_bytes() or 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _rss_bytes() or 0)
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, _rss_bytes() or 0)
        return self.peak


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's C++ start/stop chatter)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _profiled_peak(fn: Callable[[], None]) -> Optional[int]:
    """Peak of the tensor bytes allocated on CPU while ``fn`` runs, from the
    allocation events of ``torch.profiler`` (tensors that existed before
    the call are not counted; their frees are ignored)."""
    from torch.profiler import ProfilerActivity, profile
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():
        prof.start()
    try:
        fn()
    finally:
        with _quiet_stderr():
            prof.stop()
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, 'trace.json')
        prof.export_chrome_trace(trace)
        with open(trace) as f:
            events = json.load(f).get('traceEvents', [])
    totals = [e['args']['Total Allocated'] for e in events
              if e.get('name') == '[memory]' and e.get('args', {}).get('Device Type') == 0
              and 'Total Allocated' in e['args']]
    return max([0] + totals) if totals else None


def _rss_peak(fn: Callable[[], None]) -> Optional[int]:
    """Peak RSS growth while ``fn`` runs (after ``malloc_trim``)."""
    _malloc_trim()
    if _rss_bytes() is None:  # no /proc: only growth of the lifetime peak is visible
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        fn()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    sampler = _RSSSampler()
    start = sampler.peak
    sampler.start()
    try:
        fn()
    finally:
        peak = sampler.stop()
    return max(peak - start, 0)


def peak_memory_of(fn: Callable[[], None], device: str = 'cpu') -> Optional[int]:
    """Bytes of memory ``fn()`` needs above what is allocated when it starts.

    On CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation at the
    start. On CPU: the peak of the tensor bytes allocated during the call,
    from ``torch.profiler``'s allocation events; where the profiler gives
    none, the peak growth of the resident set size (sampled every 0.5 ms
    after ``malloc_trim``; an estimate that counts every allocation).
    Either way tensors only, on the device, not the Python heap.

    Args:
        fn: The call to measure (e.g. one training step).
        device: ``'cpu'`` or a CUDA device string.

    Returns:
        Bytes, or ``None`` where nothing could be read.

    Example:
        >>> peak = peak_memory_of(lambda: model.train_step(batch, optim_wrapper))
    """
    gc.collect()
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start
    peak = _profiled_peak(fn)
    return peak if peak is not None else _rss_peak(fn)
