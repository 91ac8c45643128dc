"""Engine parts of cohort training (Deep Mutual Learning)."""
from .checkpoint_hook import CohortCheckpointHook
from .optim_constructor import CohortOptimWrapperConstructor
from .runner import CohortRunner, is_distributed_cohort

__all__ = ['CohortCheckpointHook', 'CohortOptimWrapperConstructor', 'CohortRunner',
           'is_distributed_cohort']
