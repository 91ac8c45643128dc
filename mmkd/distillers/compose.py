"""A distillation config composed from a user's own config, a teacher and a recipe.

:func:`compose_distillation` is what ``tools/distill.py`` runs: the student's
config is kept whole (data, schedule, runtime, default scope); its ``model``
becomes a distiller of the family's type whose student is that model, whose
teacher is the teacher config's model with its checkpoint, and whose
recorders, connectors and losses are the recipe's (records found by role in
each net); the recipe's hooks join ``custom_hooks``, with
:class:`~mmkd.engine.TeacherEvaluationHook`. The result is a complete config
that ``tools/train.py`` runs as it is.
"""
from typing import List, Optional, Tuple

from mmengine.config import Config

from mmkd.recorders.locate import locator_class

from .builder import load_config, model_cfg_from
from .errors import DistillerConfigError
from .recipe import (
    check_task,
    join_custom_hooks,
    load_recipe,
    merge_recipe,
    model_class,
    recipe_hooks,
    to_plain,
)

#: The teacher's metrics once per run, as in mmkd's own configs.
TEACHER_EVALUATION = dict(type='mmkd.TeacherEvaluationHook')


def _net_entry(config: str, role: str) -> dict:
    """The model of ``config`` (its top-level data preprocessor folded in) with
    the scope it is built in."""
    model, scope = model_cfg_from(dict(cfg_path=config), role)
    model = to_plain(model)
    if scope is not None:
        model.setdefault('_scope_', scope)
    return model


def _preprocessing(model: dict) -> dict:
    """What a model's data preprocessor does to an image (its type without scope
    and its settings; batch augments and class counts aside)."""
    pre = dict(model.get('data_preprocessor') or {})
    for key in ('batch_augments', 'num_classes', 'to_onehot'):
        pre.pop(key, None)
    if 'type' in pre:
        pre['type'] = str(pre['type']).split('.')[-1]
    if 'bgr_to_rgb' in pre:
        pre['to_rgb'] = pre.pop('bgr_to_rgb')
    return pre


def compose_distillation(student_config: str, teacher_config: str,
                         teacher_checkpoint: Optional[str], recipe: Optional[str] = None,
                         teacher_eval: bool = True) -> Tuple[Config, str, List[str]]:
    """The distillation config of a student config, a teacher and a recipe.

    Args:
        student_config: The user's config (a path or ``scope::`` path): its
            model is the student, the rest of it is kept.
        teacher_config: The teacher's config (its model and data
            preprocessor).
        teacher_checkpoint: The teacher's weights (a file or a URL).
        recipe: A recipe name (``'kd'``) or file; ``None`` takes the default
            of the student's family (logit KD for classifiers, FPN features
            for detectors, CWD for segmentors).
        teacher_eval: Add :class:`~mmkd.engine.TeacherEvaluationHook`.

    Returns:
        ``(config, recipe name, notes)``: notes say what was chosen.
    """
    cfg = load_config(student_config)
    if 'model' not in cfg:
        raise DistillerConfigError(f'{student_config} has no `model` to distil into.')
    student = _net_entry(student_config, 'student')
    cls = model_class(student)
    family = locator_class(cls) if cls is not None else None
    notes = []
    if family is None:
        raise DistillerConfigError(
            f'{student_config}: mmkd does not know the family of its model '
            f'({student.get("type")}); tools/distill.py distils mmpretrain classifiers, mmdet '
            'detectors and mmseg encoder-decoders. Write the distiller config by hand (see '
            'configs/kd/).')
    if recipe is None:
        recipe = family.default_recipe
        notes.append(f'no --recipe: the default for a {family.task} model, {recipe!r}.')
    loaded = load_recipe(recipe)
    check_task(loaded, student)
    teacher = _net_entry(teacher_config, 'teacher')
    teacher['checkpoint'] = teacher_checkpoint
    t_pre, s_pre = _preprocessing(teacher), _preprocessing(student)
    if 'type' not in t_pre or 'type' not in s_pre:  # a default type: compare the settings
        t_pre.pop('type', None)
        s_pre.pop('type', None)
    if t_pre != s_pre:
        teacher['preprocess'] = 'own'
        notes.append("the teacher's config preprocesses images otherwise than the student's "
                     f"({t_pre} vs {s_pre}): the teacher "
                     "preprocesses the raw batch itself (preprocess='own').")
    model = dict(type=f'mmkd.{family.distiller}', _scope_='mmkd', student=student,
                 teacher=teacher)
    model.update(merge_recipe(loaded, {}))
    cfg.model = model
    hooks = recipe_hooks(loaded, cfg)
    if teacher_eval:
        hooks.append(dict(TEACHER_EVALUATION))
    join_custom_hooks(cfg, hooks)
    notes.append(f'recipe {loaded.name}: {loaded.description} ({loaded.path}).')
    return cfg, recipe, notes


def header(student_config: str, teacher_config: str, teacher_checkpoint: Optional[str],
           recipe: str) -> str:
    """The comment that heads a dumped composed config."""
    return (f'# Composed by tools/distill.py from the student config {student_config},\n'
            f'# the teacher config {teacher_config} (weights: {teacher_checkpoint})\n'
            f'# and the recipe {recipe}. Train it again with: python tools/train.py <this file>\n')
