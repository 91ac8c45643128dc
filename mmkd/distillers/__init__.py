"""Distillers: own the nets, run the teachers without grad, wire records,
connectors and losses."""
from .builder import (
    TeacherCheckpointError,
    build_model_from_cfg,
    build_model_from_config,
    load_config,
    load_teacher_checkpoint,
)
from .detection import DetectionDistiller
from .distiller import Distiller
from .errors import DistillerConfigError
from .loss_scales import TASK, LossScales
from .mutual_learner import CohortMismatchError, MutualLearner
from .nets import MEMBER, STUDENT, TEACHER, DistillationModel, Net, nets_of
from .references import ConnectorRef, RecordRef, Resolver
from .self_distiller import SelfDistiller
from .teacher import FrozenTeacher
from .teacher_cache import TeacherCache, TeacherCacheError

__all__ = ['CohortMismatchError', 'ConnectorRef', 'DetectionDistiller', 'DistillationModel',
           'Distiller', 'DistillerConfigError', 'FrozenTeacher', 'LossScales', 'MEMBER',
           'MutualLearner', 'Net', 'RecordRef', 'Resolver', 'STUDENT', 'SelfDistiller', 'TASK',
           'TEACHER', 'TeacherCache', 'TeacherCacheError', 'TeacherCheckpointError',
           'build_model_from_cfg', 'build_model_from_config', 'load_config',
           'load_teacher_checkpoint', 'nets_of']
