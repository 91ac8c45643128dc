r"""A distillation loss of your own, registered for mmkd's configs.

KD on the samples the teacher classifies correctly: where the teacher is wrong, its soft
targets teach the student a mistake, so those samples keep only the student's own
cross-entropy.

.. math::
    \mathcal{L} = \tau^2 \, \frac{1}{N} \sum_{n=1}^{N} [\arg\max t_n = y_n] \,
    \mathrm{KL}\big(\mathrm{softmax}(t_n / \tau) \,\|\, \mathrm{softmax}(s_n / \tau)\big)
"""
from typing import Optional, Sequence

import torch

from mmkd.losses import BaseDistillLoss
from mmkd.losses.functional import kl_divergence, tempered_log_softmax
from mmkd.registry import MODELS


@MODELS.register_module()
class CorrectTeacherKDLoss(BaseDistillLoss):
    """KD where the teacher is right.

    Args:
        tau: Temperature.
        loss_weight: Factor on the loss.
    """

    def __init__(self, tau: float = 4.0, loss_weight: float = 1.0):
        super().__init__(loss_weight)
        self.tau = tau

    # `student` and `teacher` are references to records (named in the config); an argument
    # called `data_samples` receives the batch's data samples (None in the build-time dry run).
    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                data_samples: Optional[Sequence] = None) -> torch.Tensor:
        self.check_same_shape(student, teacher)
        kl = kl_divergence(tempered_log_softmax(teacher, self.tau),
                           tempered_log_softmax(student, self.tau), target_is_log=True)
        if data_samples is not None:
            labels = torch.cat([sample.gt_label for sample in data_samples]).to(kl.device)
            kl = kl * (teacher.argmax(dim=1) == labels).float()
        return self.loss_weight * self.tau**2 * kl.mean()
