"""Re-save a checkpoint you trust so that mmkd can read it safely.

mmkd refuses checkpoints holding pickled objects other than those MMEngine
writes (see docs/security.md), because unpickling them can run code. A file
you made yourself with other objects inside (a custom class in ``meta``,
an old pickled optimizer) can be converted once: this tool unpickles it
fully, which runs whatever it holds, so only use it on files whose origin
you know. It keeps tensors, numbers, strings, containers, numeric numpy
values and MMEngine's logs, drops everything else (and lists what it
dropped), and writes a file that loads with mmkd's safe loader.

Example:
    python tools/model_converters/convert_trusted_checkpoint.py old.pth new.pth --i-trust-this-file
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict
from typing import Any, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

import mmkd  # noqa: F401  (the safe loader, to check the result)
from mmkd.utils import safe_torch_load

_PLAIN = (str, bytes, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device)


def plain(value: Any, where: str, dropped: List[str]) -> Any:
    """``value`` with every object outside the safe set removed (noted in ``dropped``)."""
    if isinstance(value, _PLAIN) or isinstance(value, HistoryBuffer):
        return value
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in 'biufc':
        return value
    if isinstance(value, dict):
        out = OrderedDict() if isinstance(value, OrderedDict) else {}
        metadata = getattr(value, '_metadata', None)  # a state dict's versions
        if metadata is not None:
            out._metadata = plain(metadata, f'{where}._metadata', dropped)
        for key, item in value.items():
            kept = plain(item, f'{where}[{key!r}]', dropped)
            if kept is not _DROPPED:
                out[key] = kept
        return out
    if isinstance(value, (list, tuple)):
        items = [plain(v, f'{where}[{i}]', dropped) for i, v in enumerate(value)]
        return type(value)(v for v in items if v is not _DROPPED)
    dropped.append(f'{where}: {type(value).__module__}.{type(value).__qualname__}')
    return _DROPPED


_DROPPED = object()


def main(argv=None) -> List[str]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='the trusted checkpoint')
    parser.add_argument('dst', help='where to write the converted one')
    parser.add_argument('--i-trust-this-file', action='store_true',
                        help='required: the source is unpickled fully, which runs its code')
    parser.add_argument('--force', action='store_true', help='overwrite an existing dst')
    args = parser.parse_args(argv)
    if not args.i_trust_this_file:
        parser.error('converting unpickles the source fully, which runs any code it holds; '
                     'add --i-trust-this-file if you know where the file comes from.')
    if osp.abspath(args.src) == osp.abspath(args.dst):
        parser.error('dst is src: write the converted checkpoint to a new file.')
    if osp.exists(args.dst) and not args.force:
        parser.error(f'{args.dst} exists; add --force to overwrite it.')
    dropped: List[str] = []
    converted = plain(torch.load(args.src, map_location='cpu', weights_only=False), 'checkpoint',
                      dropped)
    torch.save(converted, args.dst)
    safe_torch_load(args.dst)  # the result must pass the safe loader
    for line in dropped:
        print(f'dropped {line}', file=sys.stderr)
    print(f'wrote {args.dst} ({len(dropped)} object(s) dropped)')
    return dropped


if __name__ == '__main__':
    main()
