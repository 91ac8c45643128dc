"""Measurements of what distillation costs: time and memory over the limit."""
from .memory import peak_memory_of
from .overhead import (
    LIMIT,
    STEP,
    BenchContext,
    Leg,
    LegResult,
    OverheadResult,
    count_parameters,
    inference_leg,
    legs_for,
    member_optim_wrapper,
    time_legs,
    train_step_leg,
)

__all__ = ['LIMIT', 'STEP', 'BenchContext', 'Leg', 'LegResult', 'OverheadResult',
           'count_parameters', 'inference_leg', 'legs_for', 'member_optim_wrapper',
           'peak_memory_of', 'time_legs', 'train_step_leg']
