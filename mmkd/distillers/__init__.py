"""Distillers: own the nets, run the teacher without grad, wire records,
connectors and losses."""
from .base import BaseDistiller, DistillerConfigError
from .builder import (TeacherCheckpointError, build_model_from_cfg, load_config,
                      load_teacher_checkpoint)
from .single_teacher import SingleTeacherDistiller

__all__ = ['BaseDistiller', 'DistillerConfigError', 'SingleTeacherDistiller',
           'TeacherCheckpointError', 'build_model_from_cfg', 'load_config',
           'load_teacher_checkpoint']
