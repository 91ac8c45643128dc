"""Training loops of mmkd."""
from .staged_train_loop import StageConfigError, StagedTrainLoop, TrainStage

__all__ = ['StageConfigError', 'StagedTrainLoop', 'TrainStage']
