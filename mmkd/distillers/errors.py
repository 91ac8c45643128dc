"""Errors of the distillers' configuration."""


class DistillerConfigError(ValueError):
    """The distillation part of a config is inconsistent."""
