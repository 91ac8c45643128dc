"""Evaluation helpers of mmkd."""
from .cohort_metric import CohortMetric

__all__ = ['CohortMetric']
