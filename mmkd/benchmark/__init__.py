"""Measurements of what distillation costs: time and memory over the limit."""
from .memory import peak_memory_of
from .overhead import (
    CLOCKS,
    LIMIT,
    REFERENCE,
    STEP,
    BenchContext,
    KDReference,
    Leg,
    LegResult,
    OverheadResult,
    count_parameters,
    inference_leg,
    kd_reference,
    kd_reference_leg,
    legs_for,
    member_optim_wrapper,
    reference_legs,
    time_legs,
    train_step_leg,
)

__all__ = ['CLOCKS', 'LIMIT', 'REFERENCE', 'STEP', 'BenchContext', 'KDReference', 'Leg',
           'LegResult', 'OverheadResult', 'count_parameters', 'inference_leg', 'kd_reference',
           'kd_reference_leg', 'legs_for', 'member_optim_wrapper', 'peak_memory_of',
           'reference_legs', 'time_legs', 'train_step_leg']
