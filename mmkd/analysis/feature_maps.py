"""What a distillation loss compares, as pictures: the teacher's value, the
student's (after its connector) and their difference, level by level.

:meth:`mmkd.distillers.Distiller.distillation_inputs` gives the values every
loss receives for one batch; :func:`feature_pairs` pairs the ``teacher`` and
``student`` arguments of each loss level by level, and :func:`feature_panel`
reduces one pair to maps that share a colour scale. The plotting is
``tools/visualizations/vis_features.py``.
"""
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

#: How a (C, H, W) feature becomes a picture.
REDUCTIONS = ('mean', 'pca')


@dataclass
class FeaturePair:
    """One level of one loss: the teacher's and the student's value, one sample.

    Args:
        name: ``<loss>`` or ``<loss>[<level>]``.
        teacher: ``(C, H, W)`` for a feature map, ``(R, C)`` for logits or
            embeddings (one row per image, or per RoI of a detector).
        student: The same for the student, after its connector if the loss
            reads one.
    """
    name: str
    teacher: torch.Tensor
    student: torch.Tensor


@dataclass
class FeaturePanel:
    """One row of the picture: three maps and how they were made.

    Args:
        name: The pair's name.
        teacher: ``(H, W)`` map, or ``(H, W, 3)`` for principal components.
        student: The same for the student (resized to the teacher's size).
        difference: ``(H, W)``: student minus teacher of the channel means
            (``mean``), or the per-pixel L2 norm of student minus teacher
            over all channels (``pca``).
        limits: Shared colour scale (low, high) of ``teacher`` and ``student``.
        signed: Whether ``difference`` is signed (a scale symmetric around 0).
        how: What the maps show, for the title.
        kind: ``'map'`` (channel mean), ``'pca'`` (RGB) or ``'matrix'``
            (``(R, C)`` values as they are).
    """
    name: str
    teacher: np.ndarray
    student: np.ndarray
    difference: np.ndarray
    limits: Tuple[float, float]
    signed: bool
    how: str
    kind: str


def _levels(value) -> List[torch.Tensor]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _one_sample(value: torch.Tensor, sample: int) -> torch.Tensor:
    """Drop the batch dimension of a map; keep (R, C) matrices whole."""
    value = value.detach().float().cpu()
    if value.dim() >= 3:
        return value[sample]
    if value.dim() == 1:
        return value[None]
    return value


def _matches(wanted: Sequence[str], loss: str, refs: Mapping[str, object]) -> bool:
    names = {loss}
    for ref in refs.values():
        for one in _levels(ref):
            text = str(one)
            names.update((text, text.split('.', 1)[-1]))
    return any(w in names for w in wanted)


def feature_pairs(values: Mapping[str, Mapping[str, object]], sample: int = 0,
                  names: Optional[Sequence[str]] = None,
                  references: Optional[Mapping[str, Mapping[str, object]]] = None
                  ) -> List[FeaturePair]:
    """The teacher/student pairs of every loss, level by level.

    Args:
        values: ``{loss: {argument: value}}``, from
            :meth:`~mmkd.distillers.Distiller.distillation_inputs`. Losses
            without both a ``teacher`` and a ``student`` argument are skipped.
        sample: Which image of the batch.
        names: Keep only the losses with these names, or whose references
            (``references``) name these records or connectors.
        references: ``{loss: {argument: reference}}`` (the distiller's
            ``loss_inputs``), to select by record or connector name.

    Returns:
        One pair per level: a list value (stages, FPN levels, several
        teachers) gives one pair per item; a single student value with a
        list of teachers is paired with each of them.
    """
    pairs = []
    for loss, args in values.items():
        if 'teacher' not in args or 'student' not in args:
            continue
        if names and not _matches(names, loss, (references or {}).get(loss, {})):
            continue
        teachers, students = _levels(args['teacher']), _levels(args['student'])
        if len(students) == 1 and len(teachers) > 1:
            students = students * len(teachers)
        if len(teachers) == 1 and len(students) > 1:
            teachers = teachers * len(students)
        if len(teachers) != len(students):
            raise ValueError(f'{loss}: {len(students)} student values against {len(teachers)} '
                             'teacher values; cannot pair them level by level.')
        several = len(teachers) > 1
        for level, (t, s) in enumerate(zip(teachers, students)):
            if not (isinstance(t, torch.Tensor) and isinstance(s, torch.Tensor)):
                continue
            pairs.append(FeaturePair(f'{loss}[{level}]' if several else loss,
                                     _one_sample(t, sample), _one_sample(s, sample)))
    return pairs


def _resize(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(C, H, W) resized bilinearly to ``size``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode='bilinear', align_corners=False)[0]


def channel_mean(x: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (H, W): the mean over channels."""
    return x.mean(0)


def principal_components(teacher: torch.Tensor, student: torch.Tensor, k: int = 3
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Both (C, H, W) maps projected on the first ``k`` principal components of
    the teacher's pixels (each pixel a C-vector, centred on the teacher's mean).

    Returns:
        ``(k, H, W)`` projections of the teacher and of the student; fewer
        than ``k`` components when the teacher has fewer channels or pixels.
    """
    c, h, w = teacher.shape
    pixels = teacher.reshape(c, -1).T.double()
    mean = pixels.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(pixels - mean, full_matrices=False)
    basis = vh[:k].T  # (C, k)

    def project(x: torch.Tensor) -> torch.Tensor:
        return ((x.reshape(c, -1).T.double() - mean) @ basis).T.reshape(-1, h, w).float()

    return project(teacher), project(student)


def _to_rgb(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> np.ndarray:
    """(k, H, W) -> (H, W, 3) in [0, 1], each component on its own shared range."""
    x = ((x - low[:, None, None]) / (high - low).clamp_min(1e-12)[:, None, None]).clamp(0, 1)
    if x.shape[0] < 3:
        x = torch.cat([x, x.new_zeros(3 - x.shape[0], *x.shape[1:])])
    return x.permute(1, 2, 0).numpy()


def feature_panel(pair: FeaturePair, reduce: str = 'mean') -> FeaturePanel:
    """Reduce one pair to pictures with a shared colour scale.

    Args:
        pair: The values.
        reduce: ``'mean'`` (channel mean; difference: student minus teacher)
            or ``'pca'`` (the teacher's first three principal components as
            RGB, the student projected on the same components; difference:
            per-pixel L2 norm of student minus teacher). ``pca`` needs equal
            channel counts and falls back to ``mean`` otherwise. Matrices
            (``(R, C)`` logits) are shown as they are.

    Returns:
        The panel; the student's map is resized to the teacher's size.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f'reduce must be one of {REDUCTIONS}; got {reduce!r}.')
    t, s = pair.teacher, pair.student
    if t.dim() == 2 or s.dim() == 2:
        if t.shape != s.shape:
            raise ValueError(f'{pair.name}: teacher {tuple(t.shape)} and student '
                             f'{tuple(s.shape)} cannot be shown against each other.')
        both = torch.stack([t, s])
        return FeaturePanel(pair.name, t.numpy(), s.numpy(), (s - t).numpy(),
                            (float(both.min()), float(both.max())), True,
                            f'values {tuple(t.shape)}', 'matrix')
    s = _resize(s, tuple(t.shape[-2:]))
    shapes = f'teacher {tuple(pair.teacher.shape)}\nstudent {tuple(pair.student.shape)}'
    if reduce == 'pca' and t.shape[0] == s.shape[0]:
        pt, ps = principal_components(t, s)
        both = torch.cat([pt, ps], dim=-1)
        low, high = both.flatten(1).min(1).values, both.flatten(1).max(1).values
        return FeaturePanel(pair.name, _to_rgb(pt, low, high), _to_rgb(ps, low, high),
                            (s - t).norm(dim=0).numpy(), (0.0, 1.0), False,
                            f'first {pt.shape[0]} principal components\n{shapes}', 'pca')
    mt, ms = channel_mean(t), channel_mean(s)
    both = torch.stack([mt, ms])
    fallback = ' (channels differ: no PCA)' if reduce == 'pca' else ''
    return FeaturePanel(pair.name, mt.numpy(), ms.numpy(), (ms - mt).numpy(),
                        (float(both.min()), float(both.max())), True,
                        f'channel mean{fallback}\n{shapes}', 'map')


def feature_panels(values: Mapping[str, Mapping[str, object]], reduce: str = 'mean',
                   **kwargs) -> List[FeaturePanel]:
    """:func:`feature_pairs` then :func:`feature_panel` for each pair."""
    return [feature_panel(pair, reduce) for pair in feature_pairs(values, **kwargs)]


def describe_values(values: Mapping[str, Mapping[str, object]]) -> Dict[str, Dict[str, str]]:
    """Shapes of the values, for messages: ``{loss: {argument: shape}}``."""
    def shape(v) -> str:
        if isinstance(v, (list, tuple)):
            return '[' + ', '.join(shape(x) for x in v) + ']'
        return str(tuple(v.shape)) if isinstance(v, torch.Tensor) else type(v).__name__

    return {loss: {arg: shape(v) for arg, v in args.items()} for loss, args in values.items()}
