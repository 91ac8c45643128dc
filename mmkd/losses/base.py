"""Base class of distillation losses."""
from typing import Sequence, Union

import torch
from torch import nn

#: What a loss receives on each side: one tensor, or a list for list references.
TensorOrList = Union[torch.Tensor, Sequence[torch.Tensor]]


class ShapeMismatchError(ValueError):
    """Student and teacher values have shapes that a loss cannot compare."""

    def __init__(self, loss: str, student_shape, teacher_shape, expectation: str):
        self.student_shape = tuple(student_shape)
        self.teacher_shape = tuple(teacher_shape)
        super().__init__(f'{loss} needs {expectation}; got student {self.student_shape} and '
                         f'teacher {self.teacher_shape}.')


class BaseDistillLoss(nn.Module):
    """A loss between a student value and a teacher value.

    Subclasses implement :meth:`loss`; ``forward`` multiplies by
    ``loss_weight``. Teacher values arrive without grad. A subclass whose
    :meth:`loss` takes more arguments (such as ``data_samples``) overrides
    ``forward`` to name them: the distiller reads ``forward``'s signature to
    learn which arguments a loss takes.

    Args:
        loss_weight: Factor on the loss.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, student: TensorOrList, teacher: TensorOrList) -> torch.Tensor:
        return self.loss_weight * self.loss(student, teacher)

    def loss(self, student: TensorOrList, teacher: TensorOrList) -> torch.Tensor:
        raise NotImplementedError

    def check_same_shape(self, student: torch.Tensor, teacher: torch.Tensor) -> None:
        if student.shape != teacher.shape:
            raise ShapeMismatchError(type(self).__name__, student.shape, teacher.shape,
                                     'student and teacher values of the same shape')

    def extra_repr(self) -> str:
        return f'loss_weight={self.loss_weight}'
