"""Hooks and loops of mmkd."""
from .cohort import (
    CohortCheckpointHook,
    CohortOptimWrapperConstructor,
    CohortRunner,
    is_distributed_cohort,
)
from .hooks import DistillLossScheduleHook, KnowledgeQuantificationHook, TeacherEvaluationHook
from .loops import StageConfigError, StagedTrainLoop, TrainStage
from .optimizers import MixedPrecisionOptimWrapper, mixed_precision_cfg

__all__ = ['DistillLossScheduleHook', 'TeacherEvaluationHook', 'KnowledgeQuantificationHook',
           'MixedPrecisionOptimWrapper',
           'mixed_precision_cfg', 'StageConfigError', 'StagedTrainLoop', 'TrainStage',
           'CohortCheckpointHook', 'CohortOptimWrapperConstructor', 'CohortRunner',
           'is_distributed_cohort']
