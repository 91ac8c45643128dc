"""VGG with BN for small images (the CRD benchmark's VGG-8/11/13)."""
from typing import Sequence

from torch import nn

from mmkd.registry import MODELS

from .base import StagedBackbone


@MODELS.register_module()
class CIFARVGG(StagedBackbone):
    """Five stages of 3x3 conv-BN-ReLU; max-pooling after the first four.

    ``forward`` returns the stage outputs (before the pooling that follows
    them); the head pools globally. Parameter counts with a linear head
    (100 classes): VGG-8 3.9 M, VGG-11 9.2 M, VGG-13 9.5 M.

    Args:
        depth: 8, 11 or 13.
        in_channels: Image channels.
        out_indices, frozen_stages, norm_eval, init_cfg: see
            :class:`StagedBackbone`.
    """

    arch_settings = {
        8: ((64, ), (128, ), (256, ), (512, ), (512, )),
        11: ((64, ), (128, ), (256, 256), (512, 512), (512, 512)),
        13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    }
    num_stages = 5

    def __init__(self, depth: int = 13, in_channels: int = 3,
                 out_indices: Sequence[int] = (-1, ), frozen_stages: int = -1,
                 norm_eval: bool = False, init_cfg=None):
        super().__init__(out_indices, frozen_stages, norm_eval, init_cfg)
        if depth not in self.arch_settings:
            raise ValueError(f'CIFARVGG depth must be one of {sorted(self.arch_settings)}; '
                             f'got {depth}.')
        self.stem = nn.Identity()
        in_ch = in_channels
        for i, widths in enumerate(self.arch_settings[depth]):
            layers = []
            if i > 0:
                # Pool the previous stage's output; ceil keeps 7 -> 4 -> 2.
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            for out_ch in widths:
                layers += [nn.Conv2d(in_ch, out_ch, 3, 1, 1), nn.BatchNorm2d(out_ch),
                           nn.ReLU(inplace=True)]
                in_ch = out_ch
            self.add_module(f'layer{i + 1}', nn.Sequential(*layers))
        self.out_channels = tuple(w[-1] for w in self.arch_settings[depth])
        self._check_indices()
