"""Channels-last memory format for the nets a distiller runs.

Convolutions run faster on NHWC tensors on the CPUs measured (oneDNN) and
on GPUs with tensor cores. A net whose 4-D weights are channels-last
computes the same function: its convolutions then give channels-last
outputs whatever layout their input has. Both the teachers' fast path
(:mod:`.fast_teacher`) and the student's (:mod:`.fast_student`) use what is
here; the records of a channels-last net, and the outputs of a
channels-last connector, are read in the usual, contiguous layout
(:func:`standard_layout`), so a loss sees the tensors it would see without
either.
"""
from typing import Any, Callable, List, Mapping, Optional

import torch
from torch import nn

from .references import RecordRef
from .teacher import map_tensors

#: Marks a net that the distiller put in channels-last format (and may put back).
_CHANNELS_LAST = '_mmkd_channels_last'


def contiguous_only_modules(net: nn.Module) -> List[str]:
    """Paths of modules of ``net`` whose compiled kernels read their inputs as
    contiguous memory (MMCV's ops, e.g. ``RoIAlign``, which give wrong values
    on channels-last tensors): such a net keeps the contiguous format."""
    return [path for path, m in net.named_modules()
            if type(m).__module__.startswith('mmcv.ops')]


def suits_channels_last(net: nn.Module) -> bool:
    """Whether ``net`` has 2-D convolutions and no module that needs
    contiguous inputs (:func:`contiguous_only_modules`)."""
    return any(isinstance(m, nn.Conv2d) for m in net.modules()) and \
        not contiguous_only_modules(net)


class _ContiguousInput:
    """A conv's forward pre-hook: its input in the contiguous format."""

    def __call__(self, _module: nn.Module, args: tuple, kwargs: dict):
        if args:
            return (args[0].contiguous(),) + tuple(args[1:]), kwargs
        return args, {k: v.contiguous() if k == 'input' else v for k, v in kwargs.items()}


def _strided_pointwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (1, 1) and \
        tuple(module.stride) != (1, 1)


def to_channels_last(net: nn.Module, trained: bool = False) -> None:
    """Put ``net``'s 4-D parameters and buffers in channels-last format (in
    place), marked so that :func:`to_standard_format` can undo it.

    Args:
        net: The net.
        trained: Whether ``net`` is trained (its convolutions run backward).
            Then every strided 1x1 convolution (ResNets' downsampling
            shortcuts) keeps its weight and its input contiguous: in PyTorch
            2.14's CPU kernels, the weight gradient of a strided 1x1
            convolution in channels-last format corrupts the heap for some
            channel counts and sizes (e.g. 8 input channels at 64 x 64 aborts
            with "double free or corruption"); the contiguous kernel is sound.
            ``tools/analysis/channels_last_sweep.py`` finds such cases.
    """
    net.__dict__[_CHANNELS_LAST] = True  # first: a failed conversion is undone as a whole
    net.to(memory_format=torch.channels_last)
    if not trained:
        return
    for module in net.modules():
        if _strided_pointwise(module):
            module.to(memory_format=torch.contiguous_format)
            module.register_forward_pre_hook(_ContiguousInput(), with_kwargs=True)


def to_standard_format(net: nn.Module) -> bool:
    """Undo :func:`to_channels_last` (in place); whether there was anything to undo."""
    if not net.__dict__.pop(_CHANNELS_LAST, False):
        return False
    net.to(memory_format=torch.contiguous_format)
    for module in net.modules():
        hooks = module._forward_pre_hooks
        for key in [k for k, h in hooks.items() if isinstance(h, _ContiguousInput)]:
            del hooks[key]
            module._forward_pre_hooks_with_kwargs.pop(key, None)
    return True


def is_channels_last(net: nn.Module) -> bool:
    """Whether :func:`to_channels_last` put ``net`` in channels-last format."""
    return bool(net.__dict__.get(_CHANNELS_LAST, False))


def channels_last_input(value: Any) -> Any:
    """A 4-D tensor in channels-last format; anything else as it is."""
    if isinstance(value, torch.Tensor) and value.dim() == 4:
        return value.contiguous(memory_format=torch.channels_last)
    return value


def standard_layout(value: Any) -> Any:
    """A record of a channels-last net in the usual layout: tensors of any
    rank contiguous (a differentiable copy where they are not: a
    ``flatten(2)`` of a channels-last map is not), in lists, tuples, named
    tuples and mappings too; anything else as it is."""
    return map_tensors(torch.Tensor.contiguous, value)


def output_reader(module: nn.Module, output: Any) -> Any:
    """The output of ``module`` (a connector) as its readers see it: in the
    usual layout (:func:`standard_layout`) where the module is channels-last."""
    return standard_layout(output) if is_channels_last(module) else output


def record_reader(records: Mapping[str, Any],
                  cached: Optional[Mapping[str, Mapping[str, Any]]] = None
                  ) -> Callable[[RecordRef], Any]:
    """Reads a :class:`RecordRef` from ``records`` (net name -> its
    :class:`~mmkd.recorders.RecorderGroup`); the records of a channels-last
    net in the usual layout (:func:`standard_layout`). ``cached`` holds
    teacher name -> record -> value for the teachers whose records came from a
    teacher cache this step (:mod:`.teacher_cache`)."""
    channels_last = {name for name, group in records.items() if is_channels_last(group.model)}
    cached = cached or {}

    def read(ref: RecordRef) -> Any:
        if ref.net in cached:
            return cached[ref.net][ref.record]
        value = records[ref.net][ref.record].get()
        return standard_layout(value) if ref.net in channels_last else value

    return read
