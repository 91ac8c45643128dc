"""The teachers' metrics, once per run (and once per teacher checkpoint and data)."""
import hashlib
import json
import os
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from torch import nn

from mmkd.distillers import TEACHER, Net, nets_of
from mmkd.registry import HOOKS
from mmkd.utils import unwrap


@HOOKS.register_module()
class TeacherEvaluationHook(Hook):
    """Evaluates the teacher(s) once with the run's own evaluator.

    Inputs go through the distiller's data preprocessor, as in training.
    Before training it runs the teacher over the validation set; before
    testing, over the test set. Metrics are logged with a ``teacher/``
    prefix (``teacher/<name>/`` for each teacher of a
    ``MultiTeacherDistiller``) and stored in the message hub's runtime info
    under ``teacher_metrics``. The validation loop and ``CheckpointHook``'s
    best checkpoint keep seeing only the student's metrics. Models without
    a teacher are skipped.

    A frozen teacher's metrics change only with what the evaluation is made
    of: they are cached in ``cache_file`` under a key made of the checkpoint
    (path, size, modification time), the teacher's architecture, the data
    preprocessor (type, settings, mean and std), the split's dataloader
    (dataset, pipeline) and evaluator configs, and reused by later runs
    (seeds of a table, resumed runs).

    Args:
        before_train: Evaluate on the validation set before training.
        before_test: Evaluate on the test set before testing.
        cache_file: JSON file of cached metrics; ``None`` disables the
            cache. Default: ``$MMKD_CACHE_DIR/teacher_metrics.json`` or
            ``~/.cache/mmkd/teacher_metrics.json``.
    """

    priority = 'LOW'

    def __init__(self, before_train: bool = True, before_test: bool = True,
                 cache_file: Optional[str] = 'default'):
        self.on_train = before_train
        self.on_test = before_test
        if cache_file == 'default':
            cache_dir = os.environ.get('MMKD_CACHE_DIR',
                                       osp.join(osp.expanduser('~'), '.cache', 'mmkd'))
            cache_file = osp.join(cache_dir, 'teacher_metrics.json')
        self.cache_file = cache_file

    def before_train(self, runner) -> None:
        if self.on_train and runner.val_loop is not None:
            self._evaluate(runner, runner.val_loop.dataloader, runner.val_loop.evaluator, 'val')

    def before_test(self, runner) -> None:
        if self.on_test:
            self._evaluate(runner, runner.test_loop.dataloader, runner.test_loop.evaluator,
                           'test')

    def _evaluate(self, runner, dataloader, evaluator, split: str) -> Dict[str, float]:
        model = unwrap(runner.model)
        everything = {}
        for net in nets_of(model, TEACHER):
            key = self._cache_key(runner, net, split)
            metrics = self._cached(key)
            note = ' (cached)'
            if metrics is None:
                metrics = self._run(model, net, dataloader, evaluator)
                self._store(key, metrics)
                note = ''
            prefixed = {f'{net.log_prefix}/{k}': v for k, v in metrics.items()}
            everything.update(prefixed)
            self._report(runner, prefixed, f'{split} set', note)
        if everything:
            runner.message_hub.update_info('teacher_metrics', everything)
        return everything

    @staticmethod
    @torch.no_grad()
    def _run(model, net: Net, dataloader, evaluator) -> Dict[str, float]:
        teacher = net.module
        teacher.eval()
        preprocess = _preprocessor(model, net)
        for data_batch in dataloader:
            # The teacher sees what it sees in training (the distiller's inputs or its own).
            data = preprocess(data_batch, False)
            outputs = teacher(**data, mode='predict')
            evaluator.process(data_samples=outputs, data_batch=data_batch)
        return evaluator.evaluate(len(dataloader.dataset))

    @staticmethod
    def _report(runner, prefixed: Dict[str, float], where: str, note: str = '') -> None:
        runner.visualizer.add_scalars(prefixed, step=runner.iter)
        shown = '  '.join(f'{k}: {v:.4f}' if isinstance(v, float) else f'{k}: {v}'
                          for k, v in prefixed.items())
        runner.logger.info(f'teacher on the {where}: {shown}{note}')

    def _cache_key(self, runner, net: Net, split: str) -> Optional[str]:
        """Everything that changes the teacher's metrics: its weights file, its
        architecture, the data preprocessor it is fed through, the split's
        dataloader (dataset, pipeline) and evaluator."""
        checkpoint = net.checkpoint
        if self.cache_file is None or not checkpoint or not osp.isfile(checkpoint):
            return None
        stat = os.stat(checkpoint)
        # The cache holds the evaluator's own names (the prefix depends on the run).
        parts = ['v2', osp.abspath(checkpoint), stat.st_size, stat.st_mtime_ns,
                 repr(net.module), module_fingerprint(_preprocessor(unwrap(runner.model), net)),
                 repr(runner.cfg.get(f'{split}_dataloader')),
                 repr(runner.cfg.get(f'{split}_evaluator'))]
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()

    def _load_cache(self) -> dict:
        try:
            with open(self.cache_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _cached(self, key: Optional[str]) -> Optional[Dict[str, float]]:
        return None if key is None else self._load_cache().get(key)

    def _store(self, key: Optional[str], metrics: Dict[str, float]) -> None:
        if key is None or not all(isinstance(v, (int, float)) for v in metrics.values()):
            return
        cache = self._load_cache()
        cache[key] = metrics
        os.makedirs(osp.dirname(self.cache_file) or '.', exist_ok=True)
        tmp = f'{self.cache_file}.{os.getpid()}.tmp'
        with open(tmp, 'w') as f:
            json.dump(cache, f, indent=1)
        os.replace(tmp, self.cache_file)



def _preprocessor(model, net: Net) -> nn.Module:
    """What a teacher's inputs go through: its own where it has them."""
    own = getattr(model, 'preprocessor_of', None)
    return own(net.name) if own is not None else model.data_preprocessor


def module_fingerprint(module: nn.Module) -> str:
    """A module's type, structure, plain settings and buffers, as text: two
    modules with the same fingerprint transform inputs alike."""
    settings = {name: {k: v for k, v in vars(m).items()
                       if k != 'training' and not k.startswith('_forward')
                       and isinstance(v, (bool, int, float, str, tuple, list, type(None)))}
                for name, m in module.named_modules()}
    tensors = {k: v.detach().cpu().tolist() for k, v in module.state_dict().items()}
    return json.dumps([type(module).__qualname__, repr(module), settings, tensors], default=str)
