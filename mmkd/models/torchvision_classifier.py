"""A torchvision classifier as an mmpretrain model (a teacher from outside OpenMMLab)."""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmpretrain.models.classifiers.base import BaseClassifier
from mmpretrain.structures import DataSample

from mmkd.registry import MODELS

#: torchvision's ImageNet normalisation on 0-255 images, which MMCV loads as BGR.
IMAGENET_PREPROCESSOR = dict(type='mmpretrain.ClsDataPreprocessor',
                             mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                             to_rgb=True)


@MODELS.register_module()
class TorchvisionClassifier(BaseClassifier):
    """``torchvision.models.<arch>`` answering as an mmpretrain classifier.

    ``tensor`` mode gives the logits, ``predict`` mmpretrain ``DataSample``s
    (so mmpretrain's evaluators and :class:`~mmkd.engine.TeacherEvaluationHook`
    work), ``loss`` the cross-entropy. The net is built without weights
    (``weights=None``); a teacher's weights come from its ``checkpoint``: a
    plain torchvision state dict (``torch.save(net.state_dict())``, keys
    without the ``model.`` this wrapper adds) loads as it is. Its records
    are found by role like any classifier's (``'<logits>'`` -> ``model.fc``
    for a ResNet).

    Args:
        arch: A torchvision classification model name (``'resnet18'``,
            ``'mobilenet_v3_small'``, ...).
        num_classes: Classes of its last layer.
        data_preprocessor: Defaults to torchvision's ImageNet normalisation
            (RGB) on the BGR images MMCV loads.
        init_cfg: MMEngine init config.
        **kwargs: More arguments of the torchvision builder.

    Example (a teacher)::

        teacher=dict(type='mmkd.TorchvisionClassifier', arch='resnet50', num_classes=1000,
                     checkpoint='resnet50_imagenet.pth', data_preprocessor=dict())
    """

    def __init__(self, arch: str, num_classes: int = 1000,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None,
                 **kwargs):
        import torchvision
        super().__init__(init_cfg=init_cfg,
                         data_preprocessor=data_preprocessor or dict(IMAGENET_PREPROCESSOR))
        self.arch = arch
        self.num_classes = num_classes
        self.model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes,
                                                  **kwargs)
        self._register_load_state_dict_pre_hook(self._add_prefix)

    @staticmethod
    def _add_prefix(state_dict, prefix, *_args) -> None:
        """Keys of a plain torchvision state dict go under ``model.``."""
        own = f'{prefix}model.'
        if state_dict and not any(k.startswith(own) for k in state_dict):
            for key in [k for k in state_dict if k.startswith(prefix)]:
                state_dict[own + key[len(prefix):]] = state_dict.pop(key)

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)

    def forward(self, inputs: torch.Tensor, data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode == 'tensor':
            return self.model(inputs)
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}".')

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> dict:
        logits = self.model(inputs)
        if 'gt_score' in data_samples[0]:
            target = torch.stack([s.gt_score for s in data_samples])
        else:
            target = torch.cat([s.gt_label for s in data_samples])
        return {'loss': F.cross_entropy(logits, target)}

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None) -> List[DataSample]:
        scores = F.softmax(self.model(inputs), dim=1)
        data_samples = data_samples or [DataSample() for _ in range(scores.shape[0])]
        for sample, score in zip(data_samples, scores):
            sample.set_pred_score(score).set_pred_label(score.argmax(keepdim=True))
        return data_samples
