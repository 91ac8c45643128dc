"""Distillers: own the nets, run the teacher without grad, wire records,
connectors and losses."""
from .base import BaseDistiller, DistillerConfigError
from .detection import DetectionDistiller
from .builder import (TeacherCheckpointError, build_model_from_cfg, load_config,
                      load_teacher_checkpoint)
from .multi_teacher import MultiTeacherDistiller
from .mutual_learner import CohortMismatchError, MutualLearner
from .self_distiller import SelfDistiller
from .single_teacher import SingleTeacherDistiller

__all__ = ['BaseDistiller', 'DistillerConfigError', 'SingleTeacherDistiller',
           'TeacherCheckpointError', 'build_model_from_cfg', 'load_config',
           'load_teacher_checkpoint', 'MultiTeacherDistiller', 'SelfDistiller',
           'DetectionDistiller',
           'MutualLearner', 'CohortMismatchError']
