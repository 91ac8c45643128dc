"""The teacher's metrics, once per run."""
from typing import Dict

import torch
from mmengine.hooks import Hook

from mmkd.registry import HOOKS
from .utils import unwrap


@HOOKS.register_module()
class TeacherEvaluationHook(Hook):
    """Evaluates the teacher once with the run's own evaluator.

    Inputs go through the distiller's data preprocessor, as in training.
    Before training it runs the teacher over the validation set; before
    testing, over the test set. Metrics are logged with a ``teacher/``
    prefix and stored in the message hub's runtime info under
    ``teacher_metrics``. The validation loop and ``CheckpointHook``'s best
    checkpoint keep seeing only the student's metrics. Models without a
    ``teacher`` are skipped.

    Args:
        before_train: Evaluate on the validation set before training.
        before_test: Evaluate on the test set before testing.
    """

    priority = 'LOW'

    def __init__(self, before_train: bool = True, before_test: bool = True):
        self.on_train = before_train
        self.on_test = before_test

    def before_train(self, runner) -> None:
        if self.on_train and runner.val_loop is not None:
            self._evaluate(runner, runner.val_loop.dataloader, runner.val_loop.evaluator, 'val')

    def before_test(self, runner) -> None:
        if self.on_test:
            self._evaluate(runner, runner.test_loop.dataloader, runner.test_loop.evaluator,
                           'test')

    @torch.no_grad()
    def _evaluate(self, runner, dataloader, evaluator, split: str) -> Dict[str, float]:
        model = unwrap(runner.model)
        teacher = getattr(model, 'teacher', None)
        if teacher is None:
            return {}
        teacher.eval()
        for data_batch in dataloader:
            # The distiller's preprocessor: the teacher sees what it sees in training.
            data = model.data_preprocessor(data_batch, False)
            outputs = teacher(**data, mode='predict')
            evaluator.process(data_samples=outputs, data_batch=data_batch)
        metrics = evaluator.evaluate(len(dataloader.dataset))
        prefixed = {f'teacher/{k}': v for k, v in metrics.items()}
        runner.message_hub.update_info('teacher_metrics', prefixed)
        runner.visualizer.add_scalars(prefixed, step=runner.iter)
        shown = '  '.join(f'{k}: {v:.4f}' if isinstance(v, float) else f'{k}: {v}'
                          for k, v in prefixed.items())
        runner.logger.info(f'teacher on the {split} set: {shown}')
        return prefixed
