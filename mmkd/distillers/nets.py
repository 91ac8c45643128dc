"""The networks of a model, listed the same way for every kind of model.

Hooks, tools and the benchmark never guess what a model is from its
attributes: they ask :func:`nets_of`, which a distiller answers with its
students and teachers, a cohort with its members, and a plain model with
itself as the one student.
"""
from abc import abstractmethod
from dataclasses import dataclass
from typing import List, Optional

from mmengine.model import BaseModel
from torch import nn

from mmkd.utils import unwrap

#: Roles of a net in a model.
STUDENT, TEACHER, MEMBER = 'student', 'teacher', 'member'


@dataclass(frozen=True)
class Net:
    """One network of a model.

    Args:
        name: Its name in the model (``'student'``, ``'teacher'``, ``'r56'``,
            a cohort member's name); teachers' names prefix their records.
        role: ``'student'`` (trained, exported), ``'teacher'`` (frozen) or
            ``'member'`` (a cohort member: trained, learns from its peers).
        module: The network.
        checkpoint: Where a teacher's weights come from.
        runs_in_step: Whether a training step runs it (a teacher without
            records never runs).
        log_prefix: Prefix of its metrics in logs (``'teacher'``,
            ``'teacher/r56'``, ...).
    """
    name: str
    role: str
    module: nn.Module
    checkpoint: Optional[str] = None
    runs_in_step: bool = True
    log_prefix: str = ''


class DistillationModel(BaseModel):
    """A model made of several networks: distillers and cohorts."""

    @abstractmethod
    def nets(self) -> List[Net]:
        """Every network of the model, students (or members) first."""


def nets_of(model: nn.Module, role: Optional[str] = None) -> List[Net]:
    """The networks of ``model`` (wrappers removed), optionally of one role.

    A model that is not a :class:`DistillationModel` is one student.

    Example:
        >>> [(n.name, n.role) for n in nets_of(distiller)]
        [('student', 'student'), ('teacher', 'teacher')]
    """
    model = unwrap(model)
    if isinstance(model, DistillationModel):
        nets = model.nets()
    else:
        nets = [Net('model', STUDENT, model, log_prefix='')]
    return [n for n in nets if role is None or n.role == role]
