"""What finished runs logged: one metric of a work dir, and mean ± std over seeds.

The tools that report runs (``tools/demo.py``, ``tools/analysis/summarize_runs.py``,
``tools/analysis/quantify_knowledge.py``, ``tools/analysis/quantify_checkpoints.py``,
``tools/benchmark/model_zoo.py``) read them through these functions, so that each table
reads a run the same way.
"""
import glob
import json
import math
import os.path as osp
import statistics
from typing import Iterable, Optional


def read_run(work_dir: str, metric: str) -> Optional[dict]:
    """Final and best ``metric`` of one run, and its teacher's if logged.

    Reads every ``<timestamp>/vis_data/scalars.json`` that MMEngine's
    ``LocalVisBackend`` wrote under ``work_dir`` (a resumed run has several), in
    the order of their timestamps.

    Args:
        work_dir: The run's work dir.
        metric: A logged name, e.g. ``'accuracy/top1'``; the teacher's is read
            from ``'teacher/' + metric`` (see
            :class:`~mmkd.engine.TeacherEvaluationHook`).

    Returns:
        ``dict(final=, best=, epoch=, teacher=)``: the last and the highest
        value, the ``step`` of the last (the epoch of an epoch-based run) and
        the teacher's last value (``None`` if not logged); ``None`` if the run
        logged no ``metric``.

    Example:
        >>> read_run('work_dirs/zoo/kd_resnet56_resnet8_seed0', 'accuracy/top1')['final']
    """
    values, epochs, teacher = [], [], None
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if metric in record:
                    values.append(record[metric])
                    epochs.append(record.get('step'))
                if f'teacher/{metric}' in record:
                    teacher = record[f'teacher/{metric}']
    if not values:
        return None
    return dict(final=values[-1], best=max(values), epoch=epochs[-1], teacher=teacher)


def mean_std(values: Iterable[Optional[float]], digits: int = 2) -> str:
    """``'mean ± std'`` of the values (sample standard deviation), or the value alone.

    ``None`` and NaN are left out; with nothing left the result is ``'-'``.

    Example:
        >>> mean_std([85.63, 86.74, 86.17])
        '86.18 ± 0.56'
    """
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return '-'
    if len(values) == 1:
        return f'{values[0]:.{digits}f}'
    return f'{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}'
