"""Any metric, for each member of a cohort and for the cohort's ensemble."""
import copy
from collections import OrderedDict
from typing import Dict, Optional, Sequence

from mmengine.dist import get_world_size
from mmengine.evaluator import BaseMetric
from mmengine.structures import BaseDataElement

from mmkd.registry import METRICS

ENSEMBLE = 'ensemble'


@METRICS.register_module()
class CohortMetric(BaseMetric):
    """Evaluates one metric per cohort member and for the ensemble.

    The model (:class:`~mmkd.distillers.MutualLearner`) gives each data
    sample a ``member_preds`` field: ``{name: {pred_score, pred_label}}`` for
    every member and ``'ensemble'``. For each of them this metric fills the
    sample's prediction fields with that entry and feeds an instance of the
    wrapped metric; results are reported as ``<name>/<metric key>``, e.g.
    ``a/accuracy/top1``, ``b/accuracy/top1``, ``ensemble/accuracy/top1``.

    In a distributed cohort every process evaluates the whole validation set
    (``SharedSampler``); the metric then sees each sample once per process
    and computes on its own results instead of collecting duplicates.

    Args:
        metric: Config of the wrapped metric (e.g.
            ``dict(type='mmpretrain.Accuracy', topk=(1, ))``).
        ensemble: Also report the ensemble.
        members: Members to report (default: all, in cohort order).
        collect_device, prefix: See :class:`~mmengine.evaluator.BaseMetric`.

    Example (config)::

        val_evaluator = dict(type='CohortMetric',
                             metric=dict(type='mmpretrain.Accuracy', topk=(1, )))
    """

    default_prefix = ''  # keys are prefixed by member names already

    def __init__(self, metric: dict, ensemble: bool = True,
                 members: Optional[Sequence[str]] = None, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.metric_cfg = dict(metric)
        self.ensemble = ensemble
        self.members = list(members) if members is not None else None
        self.metrics: Dict[str, BaseMetric] = OrderedDict()
        self._seen = 0

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        self._dataset_meta = dataset_meta
        for metric in self.metrics.values():
            metric.dataset_meta = dataset_meta

    def _metric(self, name: str) -> BaseMetric:
        if name not in self.metrics:
            metric = METRICS.build(copy.deepcopy(self.metric_cfg))
            if self._dataset_meta is not None:
                metric.dataset_meta = self._dataset_meta
            self.metrics[name] = metric
        return self.metrics[name]

    def process(self, data_batch, data_samples: Sequence) -> None:
        samples = [s.to_dict() if isinstance(s, BaseDataElement) else dict(s)
                   for s in data_samples]
        if not samples:
            return
        if any('member_preds' not in s for s in samples):
            raise KeyError('CohortMetric needs the `member_preds` of a cohort model '
                           '(MutualLearner); for a single model use the metric itself.')
        found = [n for n in samples[0]['member_preds'] if n != ENSEMBLE]
        names = list(self.members) if self.members is not None else found
        missing = [n for n in names if n not in found]
        if missing:
            raise KeyError(f'CohortMetric members {missing} are not in the cohort {found}.')
        if self.ensemble:
            names.append(ENSEMBLE)
        for name in names:
            view = []
            for sample in samples:
                one = {k: v for k, v in sample.items() if k != 'member_preds'}
                one.update(sample['member_preds'][name])
                view.append(one)
            self._metric(name).process(data_batch, view)
        self._seen += len(samples)

    def compute_metrics(self, results: list) -> dict:  # pragma: no cover - see evaluate
        raise NotImplementedError('CohortMetric computes through its wrapped metrics.')

    def evaluate(self, size: int) -> dict:
        # Every process holding the whole set means a distributed cohort
        # evaluated it in full on each of them: nothing to collect.
        replicated = get_world_size() > 1 and self._seen >= size
        out = OrderedDict()
        for name, metric in self.metrics.items():
            if replicated:
                values = metric.compute_metrics(metric.results)
                if metric.prefix:
                    values = {f'{metric.prefix}/{k}': v for k, v in values.items()}
                metric.results.clear()
            else:
                values = metric.evaluate(size)
            out.update((f'{name}/{k}', v) for k, v in values.items())
        if self.prefix:
            out = OrderedDict((f'{self.prefix}/{k}', v) for k, v in out.items())
        self._seen = 0
        return out
