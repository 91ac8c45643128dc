"""Records named by their role (``'<logits>'``, ``'<fpn>'``...), found in a net's structure.

A recipe (``configs/recipes/``) does not know the models it will distil, so its
recorders name what they record by role: ``source='<logits>'`` (a
classifier's logits), ``'<pooled>'`` (its pooled feature), ``'<fpn>'`` (every
level of a detector's FPN), ``'<cls_score>'`` (a dense detection head's
classification conv, per level), ``'<decode_logits>'`` (a segmentor's decode
head logits), ``backbone='<backbone>'`` (where :class:`StageFeatures` finds the
stages). Each net's :class:`~mmkd.recorders.RecorderGroup` asks the locator of
the net's model family (:func:`locator_for`) where that is in *this* net, so
one recipe records a ResNet classifier's ``head.fc``, a timm net's ``model.fc``
and a torchvision VGG's ``model.classifier.6``.

Locators are registered by model family: the package and class name of a
class in the model's MRO (``'mmdet.SingleStageDetector'``), so a family's
subclasses (RetinaNet, FCOS...) share it and no task package is imported to
register one. A role found per level (FPN levels, one dense-head call per
level) gives one record per level, named ``<record>_<level>`` (``fpn_p3`` ..
``fpn_p7``, levels named by their stride).
"""
import math
import re
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Type, Union

from torch import nn

from .base import RecorderPathError

#: A value of the form ``'<role>'``.
SYMBOL = re.compile(r'^<(\w+)>$')
#: Where the level of a per-level location is given.
LEVEL = 'level'

Location = Dict[str, object]
Located = Union[Location, List[Location]]


class LocateError(RecorderPathError):
    """A role cannot be located in a net; the message lists the candidates."""


def symbol_of(value) -> Optional[str]:
    """The role named by ``value`` (``'<logits>'`` -> ``'logits'``), else ``None``."""
    match = SYMBOL.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def role(func: Callable) -> Callable:
    """Marks a locator method as the finder of the role of its name."""
    func.is_role = True
    return func


class Locator:
    """Finds the records of one model family in a built net.

    A role method returns the recorder keys that record it (``{'source':
    'head.fc'}``) or, for a role with one value per level, a list of them,
    each with its ``level`` name. :meth:`value` answers facts a loss may need
    (``'<num_classes>'``).

    Attributes:
        task: The family's task (``'classification'``, ``'detection'``,
            ``'segmentation'``); recipes name the task they are for.
        distiller: The distiller type for this family.
        default_recipe: The recipe ``tools/distill.py`` uses without
            ``--recipe``.
    """

    task = ''
    distiller = 'Distiller'
    default_recipe: Optional[str] = None

    def __init__(self, model: nn.Module):
        self.model = model
        self.modules = dict(model.named_modules())

    @classmethod
    def roles(cls) -> List[str]:
        return sorted(n for n in dir(cls) if getattr(getattr(cls, n), 'is_role', False))

    def locate(self, name: str) -> Located:
        """Where role ``name`` is in the net."""
        if name not in self.roles():
            raise LocateError(f'{type(self.model).__name__} ({self.task}) has no role '
                              f'<{name}>; its roles are {["<%s>" % r for r in self.roles()]}.')
        return getattr(self, name)()

    def value(self, name: str):
        """A fact of the net a loss or connector may take (``num_classes``)."""
        raise LocateError(f'{type(self.model).__name__}: no value <{name}> is known; give it '
                          'in the config.')

    # ----------------------------------------------------------------- helpers
    def _need(self, path: str, role_name: str) -> str:
        if path not in self.modules:
            raise LocateError(f'<{role_name}>: {type(self.model).__name__} has no {path!r} '
                              f'(children: {[n for n, _ in self.model.named_children()]}).')
        return path

    @role
    def backbone(self) -> Location:
        return {'backbone': self._need('backbone', 'backbone')}


#: family key ('package.ClassName') -> locator class
_LOCATORS: Dict[str, Type[Locator]] = {}


def register_locator(*families: str) -> Callable[[Type[Locator]], Type[Locator]]:
    """Register a locator for model families named ``'package.ClassName'``
    (a class in the model's MRO: subclasses share their base's locator)."""
    def add(cls: Type[Locator]) -> Type[Locator]:
        for family in families:
            _LOCATORS[family] = cls
        return cls
    return add


def family_key(cls: type) -> str:
    return f'{cls.__module__.split(".")[0]}.{cls.__name__}'


def locator_class(model_or_cls) -> Optional[Type[Locator]]:
    """The locator registered for the nearest class in the MRO, if any."""
    cls = model_or_cls if isinstance(model_or_cls, type) else type(model_or_cls)
    for klass in cls.__mro__:
        found = _LOCATORS.get(family_key(klass))
        if found is not None:
            return found
    return None


def locator_for(model: nn.Module) -> Locator:
    """The locator of ``model``'s family; an error lists the known families."""
    cls = locator_class(model)
    if cls is None:
        raise LocateError(
            f'mmkd cannot locate records by role in a {type(model).__name__}: it knows the '
            f'families {sorted(_LOCATORS)}. Give the recorder a module path instead '
            '(source="backbone.layer3"; print dict(model.named_modules()) for the paths).')
    return cls(model)


def level_name(stride, index: int) -> str:
    """``p<log2 stride>`` for a power-of-two stride (``p3`` for 8), else ``l<index>``."""
    stride = stride[0] if isinstance(stride, (tuple, list)) else stride
    log = math.log2(stride) if stride and stride > 0 else 0.5
    return f'p{int(log)}' if log == int(log) else f'l{index}'


def _ambiguous(role_name: str, model: nn.Module, candidates: List[str], key: str = 'source'):
    return LocateError(
        f'<{role_name}> is ambiguous in {type(model).__name__}: candidates {candidates}. Set '
        f'the record\'s {key} to one of them (e.g. --cfg-options '
        f'model.recorders.<record>.{key}="{candidates[-1] if candidates else "..."}", or '
        'model.student_recorders / model.teacher_recorders for one net).')


# --------------------------------------------------------------------------- families
@register_locator('mmpretrain.BaseClassifier')
class ClassifierLocator(Locator):
    """mmpretrain classifiers (``ImageClassifier``, ``TimmClassifier``,
    ``HuggingFaceClassifier``) and mmkd's ``TorchvisionClassifier``."""

    task = 'classification'
    default_recipe = 'kd'

    def _num_classes(self) -> Optional[int]:
        for owner in (getattr(self.model, 'head', None), self.model,
                      getattr(self.model, 'model', None)):
            n = getattr(owner, 'num_classes', None)
            if isinstance(n, int):
                return n
        return None

    @role
    def logits(self) -> Location:
        """The last linear layer that outputs one value per class."""
        linears = [n for n, m in self.modules.items() if isinstance(m, nn.Linear)]
        classes = self._num_classes()
        found = [n for n in linears if classes is None
                 or self.modules[n].out_features == classes]
        if len(found) > 1:
            in_head = [n for n in found if n.startswith('head.')]
            found = in_head if len(in_head) == 1 else found
        if len(found) != 1:
            raise _ambiguous('logits', self.model, found or linears)
        return {'source': found[0]}

    @role
    def pooled(self) -> Location:
        """The pooled feature the head takes (the neck's last output)."""
        return {'source': self._need('neck', 'pooled'), 'item': -1}

    @role
    def backbone(self) -> Location:
        path = 'backbone' if 'backbone' in self.modules else 'model'
        return {'backbone': self._need(path, 'backbone')}


class _DetectorLocator(Locator):
    task = 'detection'
    distiller = 'DetectionDistiller'
    default_recipe = 'fpn_mse'

    def _dense_head(self) -> nn.Module:
        raise NotImplementedError

    def _levels(self) -> List[str]:
        head = self._dense_head()
        strides = list(getattr(getattr(head, 'prior_generator', None), 'strides', []) or [])
        outs = getattr(self.modules.get('neck'), 'num_outs', None)
        if strides and (outs is None or outs == len(strides)):
            return [level_name(s, i) for i, s in enumerate(strides)]
        if isinstance(outs, int):
            return [f'l{i}' for i in range(outs)]
        raise LocateError(f'<fpn>: cannot tell the FPN levels of {type(self.model).__name__} '
                          '(no neck.num_outs, no head prior_generator.strides); record them '
                          'by hand: ModuleOutputs(source="neck", item=<level index>).')

    @role
    def fpn(self) -> List[Location]:
        """Every output level of the neck, one record each."""
        self._need('neck', 'fpn')
        return [{'source': 'neck', 'item': i, LEVEL: name}
                for i, name in enumerate(self._levels())]

    def value(self, name: str):
        if name == 'num_classes':
            head = self._dense_head()
            return int(getattr(head, 'cls_out_channels', head.num_classes))
        return super().value(name)


@register_locator('mmdet.SingleStageDetector')
class SingleStageDetectorLocator(_DetectorLocator):
    """mmdet one-stage detectors (RetinaNet, FCOS, ATSS, GFL...)."""

    def _dense_head(self) -> nn.Module:
        return self.modules[self._need('bbox_head', 'cls_score')]

    @role
    def cls_score(self) -> List[Location]:
        """The dense head's classification conv, once per level (call index = level)."""
        head = self._dense_head()
        priors = getattr(head, 'num_base_priors', None) or 1
        wanted = priors * head.cls_out_channels
        found = [f'bbox_head.{n}' for n, m in head.named_modules()
                 if isinstance(m, nn.Conv2d) and m.out_channels == wanted]
        if len(found) != 1:
            convs = [f'bbox_head.{n}' for n, m in head.named_modules() if isinstance(m, nn.Conv2d)]
            raise _ambiguous('cls_score', self.model, found or convs)
        return [{'source': found[0], 'call_index': i, LEVEL: name}
                for i, name in enumerate(self._levels())]


@register_locator('mmdet.TwoStageDetector')
class TwoStageDetectorLocator(_DetectorLocator):
    """mmdet two-stage detectors (Faster R-CNN, Cascade...): levels from the RPN."""

    def _dense_head(self) -> nn.Module:
        return self.modules[self._need('rpn_head', 'fpn')]

    def value(self, name: str):
        if name == 'num_classes':
            return int(self.model.roi_head.bbox_head.num_classes)
        return super().value(name)


@register_locator('mmseg.EncoderDecoder')
class SegmentorLocator(Locator):
    """mmseg encoder-decoders (DeepLabV3+, PSPNet, ...)."""

    task = 'segmentation'
    default_recipe = 'cwd'

    @role
    def decode_logits(self) -> Location:
        """The decode head's per-class logits (its ``conv_seg``)."""
        return {'source': self._need('decode_head.conv_seg', 'decode_logits')}

    def value(self, name: str):
        if name == 'num_classes':
            return int(self.model.decode_head.num_classes)
        return super().value(name)


# --------------------------------------------------------------------------- recorders
def locate_records(model: nn.Module, recorders: Mapping, owner: str = 'model'
                   ) -> Tuple[Dict[str, object], Dict[str, List[str]]]:
    """Replace the roles in recorder configs by where they are in ``model``.

    Args:
        model: The net.
        recorders: name -> recorder config (or recorder object, kept as is).
        owner: The net's name, for messages.

    Returns:
        ``(recorders, levels)``: the configs with every ``'<role>'`` value
        replaced, a per-level role giving one record per level named
        ``<name>_<level>``; and name -> level names of the records expanded.
    """
    out: Dict[str, object] = {}
    levels: Dict[str, List[str]] = {}
    locator = None
    for name, cfg in recorders.items():
        keys = [k for k, v in cfg.items() if symbol_of(v)] if isinstance(cfg, Mapping) else []
        if not keys:
            out[name] = cfg
            continue
        if len(keys) > 1:
            raise LocateError(f'{owner} record {name!r}: one role per recorder; got {keys}.')
        locator = locator or locator_for(model)
        try:
            found = locator.locate(symbol_of(cfg[keys[0]]))
        except LocateError as err:
            raise LocateError(f'{owner} record {name!r}: {err}') from None
        base = {k: v for k, v in cfg.items() if k != keys[0]}
        if isinstance(found, dict):
            out[name] = {**base, **found}
            continue
        levels[name] = [loc[LEVEL] for loc in found]
        for loc in found:
            out[f'{name}_{loc[LEVEL]}'] = {**base, **{k: v for k, v in loc.items()
                                                      if k != LEVEL}}
    return out, levels
