"""Distributed training on machines without CUDA (gloo through torchrun)."""
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


def finish_distributed() -> None:
    """End a distributed run cleanly: every process waits for the others, then the process
    group is destroyed (its communication threads joined) before the interpreter exits.

    Without it a process that finishes first tears down its sockets while a peer may still
    be completing the last collective, and the peer's gloo threads are left to the
    interpreter's teardown (a suspected cause of a SIGABRT, "terminate called without an
    active exception", seen once in CI at the end of successful two-process runs). A no-op
    outside distributed runs.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
