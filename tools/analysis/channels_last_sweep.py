"""Which convolutions crash PyTorch's backward pass in channels-last format.

Runs forward and backward of one ``Conv2d`` per case (kernel, stride,
dilation, dense or depthwise, input channels, size), channels-last weights
and inputs, two steps each, with glibc's heap checks on
(``MALLOC_CHECK_=3``), in worker processes: a case that aborts or segfaults
ends its worker, is reported, and the sweep goes on in a new one. On
PyTorch 2.14 (CPU) the crashes are the dense strided 1x1 convolutions with
few input channels, which is why a student trained in channels-last keeps
those convolutions contiguous (:func:`mmkd.distillers.memory_format.to_channels_last`).

Example:
    python tools/analysis/channels_last_sweep.py
    python tools/analysis/channels_last_sweep.py --kernels 1 --strides 2 --protected
"""
import argparse
import itertools
import os
import subprocess
import sys
from typing import List, Tuple

CASE_FIELDS = ('kernel', 'stride', 'dilation', 'kind', 'channels', 'size')


def cases(args: argparse.Namespace) -> List[Tuple]:
    """Every case of the sweep, in order (sizes too small for the kernel left out)."""
    found = itertools.product(args.kernels, args.strides, args.dilations, args.kinds,
                              args.channels, args.sizes)
    return [c for c in found if c[5] >= (c[0] - 1) * c[2] + 1]


def run_cases(args: argparse.Namespace, start: int) -> None:
    """Worker: run the cases from ``start`` on, printing each index before it runs."""
    import torch

    from mmkd.distillers.memory_format import to_channels_last
    torch.set_num_threads(1)
    for index, (kernel, stride, dilation, kind, channels, size) in enumerate(cases(args)):
        if index < start:
            continue
        print(index, flush=True)
        conv = torch.nn.Conv2d(channels, 2 * channels, kernel, stride=stride,
                               padding=kernel // 2 * dilation, dilation=dilation,
                               groups=channels if kind == 'depthwise' else 1, bias=False)
        if args.protected:
            to_channels_last(conv, trained=True)
        else:
            conv.to(memory_format=torch.channels_last)
        inputs = torch.randn(2, channels, size, size).contiguous(
            memory_format=torch.channels_last).requires_grad_()
        for _ in range(2):
            conv(inputs).sum().backward()
    print('done', flush=True)


def sweep(args: argparse.Namespace, argv: List[str]) -> List[Tuple]:
    """The cases that crashed their worker (``argv``: the sweep's own arguments)."""
    all_cases, crashed, start = cases(args), [], 0
    env = dict(os.environ, MALLOC_CHECK_='3', MALLOC_PERTURB_='165', OMP_NUM_THREADS='1')
    while start < len(all_cases):
        worker = subprocess.run([sys.executable, __file__, '--worker', str(start)] + argv,
                                capture_output=True, text=True, env=env)
        lines = worker.stdout.split()
        if lines and lines[-1] == 'done':
            break
        if not lines:
            raise RuntimeError(f'the worker failed before its first case:\n{worker.stderr}')
        index = int(lines[-1])
        crashed.append(all_cases[index])
        print(f'crashed (exit {worker.returncode}): ' + ', '.join(
            f'{k}={v}' for k, v in zip(CASE_FIELDS, all_cases[index])), flush=True)
        start = index + 1
    return crashed


def main(argv=None) -> List[Tuple]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--kernels', type=int, nargs='+', default=[1, 3, 5, 7])
    parser.add_argument('--strides', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--dilations', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--kinds', nargs='+', default=['dense', 'depthwise'],
                        choices=['dense', 'depthwise'])
    parser.add_argument('--channels', type=int, nargs='+',
                        default=[1, 2, 3, 4, 8, 12, 16, 24, 32, 64])
    parser.add_argument('--sizes', type=int, nargs='+', default=[7, 14, 28, 32, 56, 64, 96])
    parser.add_argument('--protected', action='store_true',
                        help="put the conv in channels-last as mmkd does for a trained net "
                             "(strided 1x1 convolutions stay contiguous)")
    parser.add_argument('--worker', type=int, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.worker is not None:
        run_cases(args, args.worker)
        return []
    crashed = sweep(args, argv)
    print(f'{len(crashed)} of {len(cases(args))} cases crashed'
          f'{" (mmkd protected)" if args.protected else ""}.')
    return crashed


if __name__ == '__main__':
    main()
