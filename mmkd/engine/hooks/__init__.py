from .contrast_memory_hook import ContrastMemoryHook
from .knowledge_quantification_hook import KnowledgeQuantificationHook
from .loss_schedule_hook import DistillLossScheduleHook
from .teacher_cache_hook import TeacherCacheHook, apply_teacher_cache
from .teacher_evaluation_hook import TeacherEvaluationHook

__all__ = ['DistillLossScheduleHook', 'TeacherEvaluationHook', 'KnowledgeQuantificationHook',
           'ContrastMemoryHook', 'TeacherCacheHook', 'apply_teacher_cache']
