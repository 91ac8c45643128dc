"""Shared behaviour of mmkd's backbones: stage outputs and frozen stages."""
from typing import Sequence, Tuple

import torch
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class StagedBackbone(BaseBackbone):
    """A stem followed by ``num_stages`` stages named ``layer1 .. layerN``.

    Subclasses build ``self.stem`` and the stages and call
    :meth:`_check_indices`. ``out_indices`` count stages from 0;
    ``frozen_stages`` freezes the stem (0) and the first stages.

    Args:
        out_indices: Which stage outputs ``forward`` returns.
        frozen_stages: Stages to freeze (stem included); -1 freezes nothing.
        norm_eval: Keep BN layers in eval mode during training.
        init_cfg: MMEngine initialisation config.
    """

    num_stages: int

    def __init__(self, out_indices: Sequence[int] = (-1, ), frozen_stages: int = -1,
                 norm_eval: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

    def _check_indices(self) -> None:
        out = []
        for index in self.out_indices:
            if not -self.num_stages <= index < self.num_stages:
                raise ValueError(f'out_indices {self.out_indices} of {type(self).__name__}: '
                                 f'{index} is not a stage index in [0, {self.num_stages}).')
            out.append(index % self.num_stages)
        self.out_indices = tuple(out)

    def stages(self) -> Tuple[nn.Module, ...]:
        return tuple(getattr(self, f'layer{i + 1}') for i in range(self.num_stages))

    def head_features(self, x: torch.Tensor) -> torch.Tensor:
        """Transform applied to the last stage's output (e.g. a final BN)."""
        return x

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages()):
            x = stage(x)
            if i == self.num_stages - 1:
                x = self.head_features(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.stem] + list(self.stages()[:self.frozen_stages])
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def init_weights(self):
        super().init_weights()
        if self.init_cfg is None:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                elif isinstance(m, (_BatchNorm, nn.GroupNorm)):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
        self._freeze_stages()

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
