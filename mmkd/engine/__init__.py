"""Hooks and loops of mmkd."""
from .cohort import (
    CohortCheckpointHook,
    CohortOptimWrapperConstructor,
    CohortRunner,
    is_distributed_cohort,
)
from .hooks import (
    DistillLossScheduleHook,
    KnowledgeQuantificationHook,
    TeacherCacheHook,
    TeacherEvaluationHook,
    apply_teacher_cache,
)
from .loops import StageConfigError, StagedTrainLoop, TrainStage
from .optimizers import MixedPrecisionOptimWrapper, mixed_precision_cfg
from .schedules import fit_schedule_to_epochs

__all__ = ['DistillLossScheduleHook', 'TeacherEvaluationHook', 'KnowledgeQuantificationHook',
           'TeacherCacheHook', 'apply_teacher_cache',
           'MixedPrecisionOptimWrapper',
           'mixed_precision_cfg', 'StageConfigError', 'StagedTrainLoop', 'TrainStage',
           'CohortCheckpointHook', 'CohortOptimWrapperConstructor', 'CohortRunner',
           'fit_schedule_to_epochs', 'is_distributed_cohort']
