"""Automatic mixed precision on CUDA and on CPU (bf16 autocast)."""
import copy
import logging
from contextlib import contextmanager
from typing import Optional, Union

import torch
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.runner.amp import autocast
from torch import nn

from mmkd.registry import OPTIM_WRAPPERS

AMP_WRAPPERS = ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper', 'MixedPrecisionOptimWrapper',
                'mmkd.MixedPrecisionOptimWrapper')


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's bf16 kernels)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@OPTIM_WRAPPERS.register_module()
class MixedPrecisionOptimWrapper(AmpOptimWrapper):
    """MMEngine's :class:`AmpOptimWrapper`, which also works on CPU.

    On a GPU (or NPU/MLU) it *is* ``AmpOptimWrapper``: autocast in
    ``dtype`` (float16 by default) with a ``GradScaler``. MMEngine's
    wrapper refuses to start without one; on CPU this one autocasts to
    bfloat16 instead, without loss scaling: bfloat16 has float32's exponent
    range, so gradients do not underflow and a scaler would only cost time.
    Parameters, gradients and optimizer state stay in float32; losses that
    need float32 cast their inputs (e.g. :class:`~mmkd.losses.KDLoss`).

    The whole ``train_step`` runs under autocast, distillation included:
    the teacher's forward, connectors and losses see the same dtype policy
    as the student, so no connector meets a tensor of another dtype than
    its weights expect.

    Args:
        loss_scale: ``GradScaler`` setting on GPUs (see
            ``AmpOptimWrapper``); ignored on CPU.
        dtype: Autocast dtype. On CPU only ``'bfloat16'`` (the default
            there).
        use_fsdp: See ``AmpOptimWrapper``.
        device_type: ``'cpu'``, ``'cuda'``...; by default the device
            MMEngine trains on.
        **kwargs: Arguments of :class:`OptimWrapper` (``optimizer``,
            ``clip_grad``, ``accumulative_counts``).

    Example (config)::

        optim_wrapper = dict(type='MixedPrecisionOptimWrapper', dtype='bfloat16',
                             optimizer=dict(type='SGD', lr=0.1, momentum=0.9))
    """

    def __init__(self, loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype, None] = None, use_fsdp: bool = False,
                 device_type: Optional[str] = None, **kwargs):
        self.device_type = device_type or get_device()
        if self.device_type != 'cpu':
            super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
            return
        OptimWrapper.__init__(self, **kwargs)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, dtype)
        if dtype is None:
            dtype = torch.bfloat16
        if dtype != torch.bfloat16:
            raise ValueError(
                'MixedPrecisionOptimWrapper on CPU autocasts to bfloat16 only; got '
                f'dtype={dtype!r}. '
                "Set dtype='bfloat16' (or leave it out), or train on a GPU for float16.")
        self.cast_dtype = dtype
        self._scale_update_param = None
        self.loss_scaler = None  # bfloat16 needs no loss scaling
        if not cpu_has_fast_bf16():
            print_log('MixedPrecisionOptimWrapper: this CPU has no native bfloat16 (AVX512-BF16 '
                      'or AMX), so bf16 autocast runs much slower than float32 here (about 25x '
                      'for a CIFAR ResNet step on AVX2); use it to check AMP, not for speed.',
                      logger='current', level=logging.WARNING)

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.loss_scaler is None:
            OptimWrapper.backward(self, loss, **kwargs)
        else:
            super().backward(loss, **kwargs)

    def step(self, **kwargs) -> None:
        if self.loss_scaler is None:
            OptimWrapper.step(self, **kwargs)
        else:
            super().step(**kwargs)

    def state_dict(self) -> dict:
        if self.loss_scaler is None:
            return OptimWrapper.state_dict(self)
        return super().state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if self.loss_scaler is None:
            # A checkpoint of a GPU run carries its scaler's state: not used here.
            state_dict = {k: v for k, v in state_dict.items() if k != 'loss_scaler'}
            OptimWrapper.load_state_dict(self, state_dict)
        else:
            super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Gradient-accumulation context and autocast on this wrapper's device."""
        with OptimWrapper.optim_context(self, model), autocast(
                device_type=self.device_type, dtype=self.cast_dtype):
            yield


def mixed_precision_cfg(optim_wrapper: dict, device: Optional[str] = None) -> dict:
    """An optim wrapper config with AMP turned on for ``device``.

    On CUDA-like devices a plain wrapper becomes MMEngine's
    ``AmpOptimWrapper`` with dynamic loss scaling (an AMP wrapper already in
    the config is kept). On CPU, where ``AmpOptimWrapper`` cannot start, the
    wrapper becomes :class:`MixedPrecisionOptimWrapper` with bfloat16.

    Args:
        optim_wrapper: The config's ``optim_wrapper`` dict.
        device: ``'cpu'``, ``'cuda'``...; by default the device MMEngine
            trains on.

    Returns:
        A new dict; the input is not changed.

    Example:
        >>> cfg.optim_wrapper = mixed_precision_cfg(cfg.optim_wrapper)
    """
    device = device or get_device()
    cfg = copy.deepcopy(dict(optim_wrapper))
    kind = cfg.get('type', 'OptimWrapper')
    if kind not in ('OptimWrapper', 'mmengine.OptimWrapper') + AMP_WRAPPERS:
        raise ValueError(f'--amp: optim wrapper {kind!r} is not one mmkd can turn into an AMP '
                         'wrapper; configure mixed precision in the config instead.')
    if device != 'cpu':
        if kind not in AMP_WRAPPERS:
            cfg['type'] = 'AmpOptimWrapper'
            cfg.setdefault('loss_scale', 'dynamic')
        return cfg
    dtype = cfg.get('dtype') or 'bfloat16'
    if str(dtype).replace('torch.', '') != 'bfloat16':
        raise ValueError(f'AMP on CPU runs in bfloat16; the config asks for dtype={dtype!r}. '
                         "Remove optim_wrapper.dtype or set it to 'bfloat16'.")
    cfg.update(type='mmkd.MixedPrecisionOptimWrapper', dtype='bfloat16')
    cfg.pop('loss_scale', None)
    return cfg
