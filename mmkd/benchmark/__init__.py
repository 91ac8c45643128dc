"""Measurements of what distillation costs: time and memory over the limit."""
from .memory import peak_memory_of
from .overhead import (LIMIT_BUILDERS, BenchContext, Leg, LegResult, OverheadResult,
                       count_parameters, inference_leg, legs_for, measure_overhead,
                       register_limit_builder, teachers_of, time_legs, train_step_leg)

__all__ = ['LIMIT_BUILDERS', 'BenchContext', 'Leg', 'LegResult', 'OverheadResult',
           'count_parameters', 'inference_leg', 'legs_for', 'measure_overhead',
           'peak_memory_of', 'register_limit_builder', 'teachers_of', 'time_legs',
           'train_step_leg']
