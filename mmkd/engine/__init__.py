"""Hooks and loops of mmkd."""
from .hooks import DistillLossScheduleHook, TeacherEvaluationHook

__all__ = ['DistillLossScheduleHook', 'TeacherEvaluationHook']
