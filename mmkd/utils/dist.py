"""Distributed training on machines without CUDA (gloo through torchrun)."""
import logging
import os
import sys

import torch
import torch.distributed as torch_dist
from mmengine.config import Config


def setup_cpu_distributed(cfg: Config) -> bool:
    """Make ``--launcher pytorch`` work on a CPU machine; returns whether it acted.

    MMEngine 0.10.7 calls ``torch.cuda.set_device`` before it initialises
    the process group, and wraps the model in DDP with ``device_ids=[rank]``;
    both fail without a GPU. We start the group first (the Runner then
    skips its own set-up) and have DDP wrap the CPU model without device
    ids.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return False
    backend = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('backend', 'gloo')
    if backend == 'nccl':
        raise RuntimeError("env_cfg.dist_cfg.backend='nccl' needs GPUs; use 'gloo' on CPU.")
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return True


#: Whether this process ended a distributed run (:func:`finish_distributed`).
_ended_distributed_run = False


def finish_distributed() -> bool:
    """End a distributed run cleanly; returns whether there was one to end.

    Every process waits for the others at a barrier, so none closes its sockets while a
    peer is still completing the last collective; then the process group is destroyed
    while the interpreter is fully alive. A no-op outside distributed runs.
    """
    global _ended_distributed_run
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return False
    torch_dist.barrier()
    torch_dist.destroy_process_group()
    _ended_distributed_run = True
    return True


def exit_after_distributed_run(exit_code: int = 0) -> None:
    """Leave a process that ended a distributed run without the interpreter's finalization.

    Python 3.11 ends any thread that asks for the GIL during finalization with
    ``pthread_exit``; a gloo or autograd thread of PyTorch's that is released then unwinds
    through C++ frames that may not be unwound, and the process aborts ("terminate called
    without an active exception", SIGABRT) after a run that succeeded, which torchrun
    reports as a failed run. CI saw it at the end of successful two-process runs. All work
    is done when this is called (:func:`finish_distributed` ended the run), so the process
    flushes its output and log files and leaves with ``os._exit``. A process that ended no
    distributed run (a single-process run, a script run inside another program) returns,
    and its interpreter exits as usual.
    """
    if not _ended_distributed_run:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(exit_code)
